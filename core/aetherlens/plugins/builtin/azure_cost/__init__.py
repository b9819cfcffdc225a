"""Azure Cost Management as a cloud-cost source (capability ``costs.collect``)."""
