"""The aws_cost plugin: AWS Cost Explorer daily costs and forecast as cloud cost records."""
