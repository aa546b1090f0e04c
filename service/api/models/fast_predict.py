"""One-row predict without Flask's per-request machinery: the common JSON predict,
answered in the WSGI layer in front of the Flask app.

A ``POST /v1/models/{name}/predict`` or ``.../versions/{version}/predict`` whose body
is ``{"records": [...]}`` in ``application/json``, with a valid bearer key holding the
``predict`` scope and a JSON answer wanted, is the request a serving client sends over
and over. Flask's request context, routing, flask-smorest's decorators and the hooks
cost about as much CPU as the prediction itself (bench/README.md), so this request is
served here by the same use case, with the same answer, the same key check and the
same predict timer as the view in ``resources.py``, which documents it.

Anything else — another path, media type or Accept, a query string, a missing or
invalid key, a body that is not exactly ``{"records": [...]}``, too many rows, an
unknown model, any error at all — goes to the Flask app untouched (the body read here
is handed on), so every error answer is the application's own problem+json.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterable

from service.api.models.resources import prediction_body, simple_records
from service.auth import DEFAULT_TENANT, scope_needed
from service.usecases import models
from service.web.scrape import observe_predict

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

# Names and versions the Flask routes surely match the same way (ASCII, no leading
# zero); anything else takes the Flask path, which knows every other case.
_ROUTE = re.compile(
    r"/v1/models/(?P<name>[A-Za-z0-9_.\-]+)(?:/versions/(?P<version>[1-9][0-9]{0,9}))?/predict"
)
_MAX_VERSION = 2147483647  # the routes' int(max=...)
_JSON_ANSWER = (None, "", "*/*", "application/json")


class FastPredict:
    """WSGI middleware serving the common JSON predict (module docstring) before ``app``."""

    def __init__(self, app: WSGIApp, services):
        self.app = app
        self.services = services

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        route = self._route(environ)
        if route is None:
            return self.app(environ, start_response)
        name, version, endpoint = route
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        started = time.perf_counter()
        try:
            answer = self._predict(environ, body, name, version, endpoint)
        except Exception:  # noqa: BLE001 - the Flask path answers it, as it answers all
            answer = None
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        content, headers = answer
        observe_predict(endpoint, time.perf_counter() - started)
        start_response("200 OK", headers)
        return [content]

    def _route(self, environ: dict) -> tuple[str, int | None, str] | None:
        """(name, version, endpoint) of a request this path may serve, else ``None``."""
        if environ["REQUEST_METHOD"] != "POST" or environ.get("QUERY_STRING"):
            return None
        if environ.get("CONTENT_TYPE") != "application/json":
            return None
        if environ.get("HTTP_ACCEPT") not in _JSON_ANSWER:
            return None
        length = environ.get("CONTENT_LENGTH", "")
        if not length.isdigit() or int(length) > self.services.settings.max_request_bytes:
            return None
        found = _ROUTE.fullmatch(environ.get("PATH_INFO", ""))
        if found is None:
            return None
        if found["version"] is None:
            return found["name"], None, "models.PredictLatest"
        version = int(found["version"])
        if version > _MAX_VERSION:
            return None
        return found["name"], version, "models.PredictVersion"

    def _predict(self, environ, body: bytes, name, version, endpoint):
        """The answer's body and headers, or ``None`` for the Flask path to answer."""
        svc = self.services
        tenant = self._tenant(environ.get("HTTP_AUTHORIZATION", ""), endpoint)
        rows = simple_records(body)
        if tenant is None or rows is None or len(rows) > svc.settings.max_predict_rows:
            return None
        result = models.predict(
            svc.database,
            svc.models,
            tenant,
            name,
            version,
            rows,
            max_columns=svc.settings.max_columns,
            max_cell_chars=svc.settings.max_cell_chars,
        )
        return prediction_body(result)

    def _tenant(self, authorization: str, endpoint: str) -> str | None:
        """The tenant of a valid key that may call ``endpoint``; ``None`` otherwise."""
        svc = self.services
        if svc.settings.auth == "off":
            return DEFAULT_TENANT
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        principal = svc.keys.authenticate(svc.database, key.strip())
        if principal is None or scope_needed(endpoint, "POST") not in principal.scopes:
            return None
        return principal.tenant
