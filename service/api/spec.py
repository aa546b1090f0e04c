"""The Api: flask-smorest's, answering and documenting every error as RFC 9457
problem+json."""

from __future__ import annotations

import http

import flask_smorest
from apispec import APISpec

from service.api.schemas import ProblemSchema
from service.errors import PROBLEM_MIMETYPE, handle_http_exception


def problem_doc(description: str) -> dict:
    """``alt_response`` arguments documenting a problem+json error."""
    return {"schema": ProblemSchema, "content_type": PROBLEM_MIMETYPE, "description": description}


class Api(flask_smorest.Api):
    """flask-smorest's Api, answering and documenting RFC 9457 problem+json errors."""

    ERROR_SCHEMA = ProblemSchema

    def init_app(self, app, *, spec_kwargs=None):
        super().init_app(app, spec_kwargs=spec_kwargs)
        document_problems(self.spec, self.DEFAULT_ERROR_RESPONSE_NAME)

    def handle_http_exception(self, error):
        return handle_http_exception(error)


def document_problems(spec: APISpec, default_name: str) -> None:
    """Document the error responses flask-smorest refers to (one per HTTP status, and
    ``default_name`` on every operation) as problem+json rather than its JSON body.

    Each is registered lazily, as flask-smorest registers its own, through apispec's
    public ``components.response``: a later lazy registration of a name replaces the
    earlier, and only the ones an operation refers to reach the document.
    """

    def register(name: str, description: str, problem: bool) -> None:
        response: dict = {"description": description}
        if problem:
            response["content"] = {PROBLEM_MIMETYPE: {"schema": ProblemSchema}}
        spec.components.response(name, response, lazy=True)

    for status in http.HTTPStatus:
        register(status.name, status.phrase, status >= 400)
    register(default_name, "An error, as RFC 9457 problem+json", True)


def links(status: int, **named: dict) -> dict:
    """``blp.doc`` arguments giving the ``status`` response OpenAPI links (``named``,
    each made by :func:`link`): where a client, or schemathesis's stateful phase,
    goes next with what this answer holds."""
    return {"responses": {status: {"links": named}}}


def link(path: str, method: str = "get", *, body: dict | None = None, **parameters: str) -> dict:
    """A Link object to ``method path`` (``path`` as the document spells it, e.g.
    ``/v1/jobs/{job_id}``): its ``parameters``, and fields of its JSON ``body``, as
    runtime expressions such as ``$response.body#/id``."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    found: dict = {"operationRef": f"#/paths/{pointer}/{method}"}
    if parameters:
        found["parameters"] = parameters
    if body is not None:
        found["requestBody"] = body
    return found
