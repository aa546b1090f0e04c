"""/v1/models: trained model versions and predictions."""
