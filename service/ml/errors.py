"""The ML core's exceptions: one base class, one subclass per kind of failure."""


class MLError(Exception):
    """Base class of every error the ML core raises."""


class DataError(MLError):
    """The data cannot be used as it is.

    Parameters
    ----------
    message:
        What is wrong, for a person.
    field:
        Where: a column name, or a path such as ``records[3].age``; ``None`` when
        the problem is with the whole table.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class MissingDependency(MLError):
    """A feature needs an optional package that is not installed (e.g. the ``onnx`` extra)."""
