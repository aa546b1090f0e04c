"""The pure ML core: tables in, trained networks and probabilities out.

Imports numpy, pandas and torch only, never Flask, SQLAlchemy or Celery.

Exception hierarchy::

    MLError
    ├── DataError          the table or the rows sent cannot be used as they are
    └── MissingDependency  a feature needs an optional package (e.g. the onnx extra)
"""

from service.ml.errors import DataError, MissingDependency, MLError

__all__ = ["DataError", "MissingDependency", "MLError"]
