"""Predict with ``Accept: text/csv``: a CSV answer, ``label,p_<class>,...`` per row.

A ``text/csv`` body goes to batch predict (``service.usecases.batch_predict``): read a
chunk at a time, under its own limits (``TRAINSERVE_MAX_BATCH_PREDICT_BYTES`` instead of
``MAX_UPLOAD_BYTES``, ``TRAINSERVE_MAX_BATCH_PREDICT_ROWS`` instead of
``MAX_PREDICT_ROWS``). A JSON body is read by the JSON predict, with its limits, and its
result answered in CSV (:func:`csv_response`).
"""

from __future__ import annotations

import string
from urllib.parse import quote

from flask import Response, request
from werkzeug.wsgi import wrap_file

from service.api.body import Body
from service.api.services import services, tenant
from service.ml.batch import predictions_csv
from service.usecases import batch_predict, models

CSV_MIMETYPE = "text/csv"
IGNORED_HEADER = "X-Ignored-Columns"
_SAFE = "".join(c for c in string.printable if c not in "%,\t\n\r\x0b\x0c")

CSV_ANSWER_DOC = {
    "responses": {
        200: {
            "headers": {
                IGNORED_HEADER: {
                    "description": "Columns of the body that were read and not used: the "
                    "model's target, when a labelled file is scored as it is (names "
                    "UTF-8 percent-encoded, comma-separated)",
                    "schema": {"type": "string"},
                }
            },
            "content": {
                CSV_MIMETYPE: {
                    "schema": {
                        "type": "string",
                        "description": "With Accept: text/csv: a header label,p_<class>,... "
                        "(classes in the model's order), then one line per input row, in "
                        "input order",
                    }
                }
            }
        }
    }
}


def wants_csv() -> bool:
    """Whether the client prefers ``text/csv`` to JSON (no Accept, or ``*/*``: JSON)."""
    best = request.accept_mimetypes.best_match(("application/json", CSV_MIMETYPE))
    return best == CSV_MIMETYPE


def csv_response(result: models.Prediction) -> Response:
    """A prediction already made, as CSV (a JSON body, read as the JSON predict reads it)."""
    text = predictions_csv(result.classes, result.probabilities)
    response = Response(text, mimetype=CSV_MIMETYPE)
    return with_ignored(_with_model(response, result.name, result.version), result.ignored)


def batch_predict_response(name: str, version: int | None, body: Body) -> Response:
    """Batch predict of the CSV ``body`` (its stream not opened yet): read and predicted
    in chunks, answered from a file."""
    svc = services()
    settings = svc.settings
    # This body is read a chunk at a time, so the JSON body limit does not apply.
    request.max_content_length = settings.max_batch_predict_bytes
    result = batch_predict.predict_csv(
        svc.database,
        svc.models,
        tenant(),
        name,
        version,
        body.stream,  # opened after the limit above is set
        batch_predict.CsvLimits(
            max_rows=settings.max_batch_predict_rows,
            max_columns=settings.max_columns,
            max_cell_chars=settings.max_cell_chars,
        ),
    )
    response = Response(
        wrap_file(request.environ, result.body, 1 << 16),
        mimetype=CSV_MIMETYPE,
        direct_passthrough=True,
    )
    response.content_length = result.size
    return with_ignored(_with_model(response, result.name, result.version), result.ignored)


def with_ignored(response: Response, ignored: tuple[str, ...]) -> Response:
    """Say which columns of the body were set aside (the model's target, by name; UTF-8
    percent-encoded, so that any column name fits in a header)."""
    if ignored:
        response.headers[IGNORED_HEADER] = ignored_header(ignored)
    return response


def ignored_header(ignored: tuple[str, ...]) -> str:
    """The value of :data:`IGNORED_HEADER` naming ``ignored``."""
    return ", ".join(quote(name, safe=_SAFE) for name in ignored)


def _with_model(response: Response, name: str, version: int) -> Response:
    """The version that answered, which the CSV itself cannot say."""
    response.headers["X-Model-Name"] = name
    response.headers["X-Model-Version"] = str(version)
    return response
