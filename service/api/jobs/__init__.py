"""/v1/jobs: submit, watch and cancel training jobs."""
