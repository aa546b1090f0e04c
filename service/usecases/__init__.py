"""Orchestration: a session, storage and the ML core; no HTTP, no Celery.

Exception hierarchy (mapped to problem+json once, in ``service.errors``)::

    UseCaseError
    ├── NotFound         an id or name that does not exist        → 404
    ├── Conflict         the request does not fit the state       → 409
    ├── InvalidRequest   a field's value cannot be used           → 400
    │   └── InvalidFields  several fields, each with its messages  → 400
    ├── TooManyJobs      the tenant's active-job limit is reached → 429
    ├── Unauthenticated  no valid API key                         → 401
    └── CorruptModel     stored weights fail their check          → 500 (logged)
"""
