"""Request and response models of the data routes (devices, metrics, costs, tariffs, alerts, plugins)."""
