"""What every resource package shares: the Api and Blueprint subclasses, base schemas,
request-body reading and access to the app's services."""

from __future__ import annotations

import http
import json
from dataclasses import dataclass
from typing import Any

import flask_smorest
from flask import current_app, g, request
from flask_smorest.utils import prepare_response
from marshmallow import RAISE, Schema, fields, validate
from webargs.flaskparser import FlaskParser

from service.config import Settings
from service.db.session import Database
from service.errors import PROBLEM_MIMETYPE, UnsupportedMediaType, handle_http_exception
from service.usecases.errors import InvalidRequest
from service.usecases.jobs import Publisher
from service.usecases.keys import KeyCache
from service.usecases.models import ModelCache

MODEL_NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
    error="must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
)


@dataclass
class Services:
    """The per-process objects the views hand to the use cases."""

    settings: Settings
    database: Database
    publisher: Publisher
    models: ModelCache
    keys: KeyCache

    def close(self) -> None:
        """Release connections (tests and clean shutdowns)."""
        self.database.close()
        close = getattr(self.publisher, "close", None)
        if close is not None:
            close()


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["trainserve"]


def tenant() -> str:
    """The tenant the request authenticated as (see ``service.auth``)."""
    return g.tenant


class ProblemSchema(Schema):
    """An RFC 9457 problem, as every error is answered."""

    type = fields.String(metadata={"description": "A URI for the kind of problem"})
    title = fields.String(metadata={"description": "The HTTP status phrase"})
    status = fields.Integer()
    detail = fields.String(metadata={"description": "What went wrong, for a person"})
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Field path (e.g. hyperparameters.epochs) → messages"},
    )
    scope = fields.String(
        metadata={"description": "On a 403: the API key scope the request needs"}
    )


def problem_doc(description: str) -> dict:
    """``alt_response`` arguments documenting a problem+json error."""
    return {"schema": ProblemSchema, "content_type": PROBLEM_MIMETYPE, "description": description}


class Api(flask_smorest.Api):
    """flask-smorest's Api, answering and documenting RFC 9457 problem+json errors."""

    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error):
        return handle_http_exception(error)

    def _register_responses(self):
        # flask-smorest documents its own error body as application/json; ours differs.
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if status >= 400:
                response["schema"] = ProblemSchema
            prepare_response(response, self.spec, PROBLEM_MIMETYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "An error, as RFC 9457 problem+json", "schema": ProblemSchema}
        prepare_response(response, self.spec, PROBLEM_MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)


class _Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(flask_smorest.Blueprint):
    """A Blueprint whose argument validation failures are 400s."""

    ARGUMENTS_PARSER = _Parser()


class BaseSchema(Schema):
    """Unknown fields are errors, never silently dropped."""

    class Meta:
        unknown = RAISE


class PageArgsSchema(BaseSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 1_000_000_000))


DATASET_NAME = validate.And(
    validate.Length(1, 255),
    validate.Predicate("isprintable", error="must not contain control characters"),
)


def body_kind(*accepted: str) -> str:
    """The request's media type if it is one of ``accepted``, else a 415 naming them."""
    mimetype = request.mimetype
    if mimetype not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type {mimetype or '(none)'!r} is not accepted here; use one of "
            + ", ".join(accepted)
        )
    return mimetype


def json_body() -> Any:
    """The parsed JSON body; malformed JSON is a 400 that says where it breaks."""
    try:
        return json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}", "body") from None
    except RecursionError:
        raise InvalidRequest("the body's JSON is nested too deeply", "body") from None


def request_body_doc(schema_name: str, *extra: str, description: str = "") -> dict:
    """An OpenAPI requestBody for an endpoint that reads JSON and other media types."""
    content: dict[str, Any] = {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
    }
    for kind in extra:
        if kind == "text/csv":
            content[kind] = {"schema": {"type": "string"}}
        elif kind == "multipart/form-data":
            content[kind] = {"schema": {"type": "object"}}
    return {"requestBody": {"required": True, "content": content, "description": description}}


def filename_stem(filename: str | None, default: str = "dataset") -> str:
    """``data/iris.csv`` → ``iris``: the default name of an uploaded file's dataset or model
    (control characters removed, at most 128 characters)."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = "".join(c for c in stem if c.isprintable())[:128]
    return stem or default


def form_name(value: str | None, field: str = "name") -> str | None:
    """A dataset name from a form or query string, checked like the JSON one."""
    if value is None:
        return None
    if not 1 <= len(value) <= 255 or not value.isprintable():
        raise InvalidRequest("must be 1-255 printable characters", field)
    return value
