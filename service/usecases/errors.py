"""The use cases' exceptions (hierarchy in ``service.usecases``)."""


class UseCaseError(Exception):
    """Base class of every use-case error."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(UseCaseError):
    """The resource named does not exist."""


class Conflict(UseCaseError):
    """The request is valid but the resource's state does not allow it."""


class InvalidRequest(UseCaseError):
    """A field of the request cannot be used; ``field`` names it."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class InvalidFields(InvalidRequest):
    """Several fields of the request cannot be used: ``errors`` maps each field's path
    (``search.grid.learning_rate[1]``) to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        field, messages = next(iter(errors.items()))
        super().__init__(messages[0], field)
        self.errors = errors


class TooManyJobs(UseCaseError):
    """The tenant already has as many queued and running jobs as it may."""


class Unauthenticated(UseCaseError):
    """No API key, or one that is unknown or revoked."""


class Forbidden(UseCaseError):
    """The API key is valid but lacks the scope the request needs; ``scope`` names it."""

    def __init__(self, message: str, scope: str):
        super().__init__(message)
        self.scope = scope


class CorruptModel(UseCaseError):
    """A stored model fails its integrity check and is refused, never loaded."""
