"""Every error a client sees, as RFC 9457 ``application/problem+json``, mapped in one place.

Domain exceptions (``UseCaseError`` subclasses, the ML core's ``DataError``,
marshmallow's ``ValidationError``) and HTTP exceptions (404 route, 405, 413, 415,
malformed JSON, ...) all become ``{"type", "title", "status", "detail"}``, plus
``errors`` (field → messages) for validation failures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, json
from marshmallow import ValidationError
from sqlalchemy.exc import DataError as SQLDataError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from service.ml.errors import DataError, MissingDependency
from service.usecases.errors import (
    Conflict,
    CorruptModel,
    Forbidden,
    InvalidFields,
    InvalidRequest,
    NotFound,
    TooManyJobs,
    Unauthenticated,
    UseCaseError,
)

log = logging.getLogger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"


class UnsupportedMediaType(UseCaseError):
    """The request body's Content-Type is not one the endpoint reads."""


def problem(
    status: int,
    detail: str | None = None,
    *,
    errors: dict[str, list[str]] | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response:
    """Build a problem+json response (``extensions``: RFC 9457 extension members)."""
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        # No problem-specific documentation exists yet, so the RFC's default type applies.
        "type": "about:blank",
        "title": title or phrase,
        "status": status,
        "detail": detail or phrase,
    }
    if errors:
        body["errors"] = errors
    body.update(extensions or {})
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    response.headers.update(headers or {})
    return response


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as ``{"a.b[0]": ["..."]}``."""
    if isinstance(messages, dict):
        out: dict[str, list[str]] = {}
        for key, value in messages.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif key == "_schema":
                path = prefix or "body"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten_messages(value, path))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "body": messages}
    if isinstance(messages, list):
        return flatten_messages(dict(enumerate(messages)), prefix)
    return {prefix or "body": [str(messages)]}


def handle_http_exception(error: HTTPException) -> Response:
    """Any werkzeug/webargs HTTP error as problem+json (validation errors as 400)."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if messages is not None:
        # webargs nests by location ("json", "query"); the field path is what matters.
        if isinstance(messages, dict) and len(messages) == 1:
            messages = next(iter(messages.values()))
        errors = flatten_messages(messages)
        return problem(400, _summary(errors), errors=errors, headers=data.get("headers"))
    if isinstance(error, InternalServerError):
        original = getattr(error, "original_exception", None)
        if original is not None:
            log.error("unhandled error", exc_info=original)
        return problem(500, "an internal error occurred; it has been logged")
    detail = error.description if status != 413 else "the request body is larger than the limit"
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return problem(status, detail, headers=headers)


def register_error_handlers(app: Flask) -> None:
    """Map each domain exception to its status once (:data:`_HANDLERS`)."""
    for exception, handler in _HANDLERS.items():
        app.register_error_handler(exception, handler)


def _plain(status: int) -> Callable[[Exception], Response]:
    """A handler answering ``status`` with the error's message."""
    return lambda error: problem(status, error.message)


def _field_error(error: InvalidRequest | DataError) -> Response:
    return _field_problem(error.message, error.field)


def _invalid_fields(error: InvalidFields) -> Response:
    return problem(400, _summary(error.errors), errors=error.errors)


def _unauthenticated(error: Unauthenticated) -> Response:
    return problem(401, error.message, headers={"WWW-Authenticate": 'Bearer realm="trainserve"'})


def _forbidden(error: Forbidden) -> Response:
    return problem(403, error.message, extensions={"scope": error.scope})


def _too_many(error: TooManyJobs) -> Response:
    return problem(429, error.message, headers={"Retry-After": "30"})


def _corrupt(error: CorruptModel) -> Response:
    log.error("refused a stored model: %s", error.message)
    return problem(500, error.message)


def _not_installed(error: MissingDependency) -> Response:
    return problem(501, str(error))


def _database_down(error: DBAPIError) -> Response:
    log.warning("database unavailable: %s", error.orig)
    return problem(
        503, "the database is unavailable; try again shortly", headers={"Retry-After": "5"}
    )


def _rejected_by_database(error: SQLDataError) -> Response:
    log.warning("the database rejected a value: %s", error.orig)
    return problem(400, "a value in the request cannot be stored (too long or invalid)")


def _validation(error: ValidationError) -> Response:
    errors = flatten_messages(error.messages)
    return problem(400, _summary(errors), errors=errors)


#: Each exception's handler; Flask picks the one of the most specific class.
_HANDLERS: dict[type[Exception], Callable[[Any], Response]] = {
    NotFound: _plain(404),
    Conflict: _plain(409),
    UnsupportedMediaType: _plain(415),
    InvalidRequest: _field_error,
    DataError: _field_error,
    InvalidFields: _invalid_fields,
    Unauthenticated: _unauthenticated,
    Forbidden: _forbidden,
    TooManyJobs: _too_many,
    CorruptModel: _corrupt,
    MissingDependency: _not_installed,
    OperationalError: _database_down,
    InterfaceError: _database_down,
    SQLDataError: _rejected_by_database,
    ValidationError: _validation,
}


def _field_problem(message: str, field: str | None) -> Response:
    """A 400 whose detail, like the errors map, names the field at fault."""
    field = field or "body"
    return problem(400, f"{field}: {message}", errors={field: [message]})


def _summary(errors: dict[str, list[str]]) -> str:
    field, messages = next(iter(errors.items()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {messages[0]}{more}"
