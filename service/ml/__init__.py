"""The pure ML core: tables in, trained networks and probabilities out.

Imports numpy, pandas and torch only, never Flask, SQLAlchemy or Celery.

Exception hierarchy::

    MLError
    └── DataError        the table or the rows sent cannot be used as they are
"""

from service.ml.errors import DataError, MLError

__all__ = ["DataError", "MLError"]
