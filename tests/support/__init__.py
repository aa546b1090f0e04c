"""What the tests share: ``data`` (tables), ``training`` (datasets stored, jobs submitted
and trained in-process), ``services`` (PostgreSQL, Redis and S3 fixtures that fail, never
skip, when the service is down), ``live_server`` (the app on a real port, a worker in a
thread), ``batch_memory`` (the peak-memory probe batch predict's test runs as a script)."""
