"""/v1/jobs/{id}/events and /plot: a job's progress as a live stream and as curves."""
