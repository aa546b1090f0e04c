"""What the tests share: ``data`` (tables), ``ml`` (prepared splits, a resumed trainer),
``training`` (datasets stored, jobs submitted and trained in-process), ``servers`` (this
machine's PostgreSQL and Redis; scratch databases), ``services`` (PostgreSQL, Redis and
S3 fixtures that fail, never skip, when the service is down), ``live_server`` (the app on
a real port, a worker in a thread), ``batch_memory`` (the peak-memory probe batch
predict's test runs as a script)."""
