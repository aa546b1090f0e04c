"""/v1/datasets: upload and manage tables."""
