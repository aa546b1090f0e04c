"""Views of /v1/models."""

from collections.abc import Callable

import orjson
from flask import Response
from flask.views import MethodView

from service.api.blueprint import Blueprint, stacked
from service.api.body import CSV, Body, parse_json
from service.api.models.csv_predict import (
    CSV_ANSWER_DOC,
    IGNORED_HEADER,
    batch_predict_response,
    csv_response,
    ignored_header,
    wants_csv,
)
from service.api.models.schemas import (
    ModelSchema,
    ModelSummarySchema,
    ModelVersionSchema,
    PredictionSchema,
    PredictRequestSchema,
)
from service.api.services import services, tenant
from service.api.spec import link, links, problem_doc
from service.ml import tabular
from service.ml.ingest import decompressed
from service.ml.preprocessing import label_key
from service.usecases import aliases, models
from service.usecases.errors import InvalidRequest

blp = Blueprint("models", __name__, url_prefix="/v1/models", description="Models and predictions")


_NAME = "$response.body#/name"
_NEWEST = "$response.body#/versions/0/version"
#: Where a model's answer leads: its versions, predict and evaluate, an alias, OIP.
MODEL_LINKS = {
    "Predict": link("/v1/models/{name}/predict", "post", name=_NAME),
    "Evaluate": link("/v1/models/{name}/evaluate", "post", name=_NAME),
    "ListVersions": link("/v1/models/{name}/versions", name=_NAME),
    "GetNewestVersion": link("/v1/models/{name}/versions/{version}", name=_NAME, version=_NEWEST),
    "SetAlias": link(
        "/v1/models/{name}/aliases/{alias}", "put", name=_NAME, body={"version": _NEWEST}
    ),
    "GetOipModel": link("/v2/models/{name}", name=_NAME),
    "GetOipModelReady": link("/v2/models/{name}/ready", name=_NAME),
    "OipInfer": link("/v2/models/{name}/infer", "post", name=_NAME),
}
_VERSION = "$response.body#/version"
#: Where a model version's answer leads: predict, evaluate, export and OIP by version.
VERSION_LINKS = {
    "PredictVersion": link(
        "/v1/models/{name}/versions/{version}/predict", "post", name=_NAME, version=_VERSION
    ),
    "EvaluateVersion": link(
        "/v1/models/{name}/versions/{version}/evaluate", "post", name=_NAME, version=_VERSION
    ),
    "ExportVersion": link(
        "/v1/models/{name}/versions/{version}/export", name=_NAME, version=_VERSION
    ),
    "GetOipVersion": link("/v2/models/{name}/versions/{version}", name=_NAME, version=_VERSION),
    "GetOipVersionReady": link(
        "/v2/models/{name}/versions/{version}/ready", name=_NAME, version=_VERSION
    ),
    "OipInferVersion": link(
        "/v2/models/{name}/versions/{version}/infer", "post", name=_NAME, version=_VERSION
    ),
}


@blp.route("")
class Models(MethodView):
    @blp.response(200, ModelSummarySchema(many=True))
    @blp.doc(**links(200, GetModel=link("/v1/models/{name}", name="$response.body#/0/name")))
    def get(self):
        """List models with their latest version"""
        return models.list_models(services().database, tenant())


@blp.route("/<string:name>")
class ModelByName(MethodView):
    @blp.response(200, ModelSchema)
    @blp.doc(**links(200, **MODEL_LINKS))
    @blp.alt_response(404, **problem_doc("No such model"))
    def get(self, name):
        """Get a model, its versions (newest first) and its aliases"""
        db = services().database
        versions = models.list_versions(db, tenant(), name)
        named = aliases.list_aliases(db, tenant(), name)
        return {"name": name, "versions": versions, "aliases": named}


@blp.route("/<string:name>/versions/<int(max=2147483647):version>")
class ModelVersionView(MethodView):
    @blp.response(200, ModelVersionSchema)
    @blp.doc(**links(200, **VERSION_LINKS))
    @blp.alt_response(404, **problem_doc("No such model version"))
    def get(self, name, version):
        """Get one model version: classes, input schema, hyperparameters, final metrics"""
        return models.get_version(services().database, tenant(), name, version)


def simple_records(raw: bytes) -> list | None:
    """The rows of the common predict body, ``{"records": [...]}`` with at least one
    row, parsed with orjson (its rows are checked while they are encoded,
    service.ml.records); ``None`` for any other body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(body) is dict and body.keys() == {"records"} and type(body["records"]) is list:
        return body["records"] or None
    return None


def _records(raw: bytes) -> list:
    """The rows of a JSON predict body: the common one (:func:`simple_records`), or any
    other through PredictRequestSchema, which also reads MLflow's formats and says what
    is wrong (parse_json(): where malformed JSON breaks, as everywhere else)."""
    rows = simple_records(raw)
    if rows is not None:
        return rows
    return PredictRequestSchema().load(parse_json(raw))["records"]


#: The body of every predict endpoint (registry's alias predict too).
predict_body = blp.body(
    PredictRequestSchema,
    csv=True,
    load_json=_records,
    description="JSON with exactly one of records (trainserve), dataframe_records, "
    "dataframe_split or inputs (MLflow's scoring formats), or CSV with a header row",
)


def predict_contract(not_found: str) -> Callable[[Callable], Callable]:
    """What every predict endpoint declares (registry's alias predict too): its body, the
    CSV answer, the answer and its errors; ``not_found`` says what its 404 means."""
    return stacked(
        predict_body,
        blp.doc(**CSV_ANSWER_DOC),
        blp.response(200, PredictionSchema),
        blp.alt_response(400, **problem_doc("Invalid input; errors names each field")),
        blp.alt_response(404, **problem_doc(not_found)),
        blp.alt_response(415, **problem_doc("Unsupported Content-Type")),
    )


@blp.route("/<string:name>/predict")
class PredictLatest(MethodView):
    @predict_contract("No such model")
    def post(self, body: Body, name):
        """Predict class probabilities with the latest version"""
        return predict(body, name, None)


@blp.route("/<string:name>/versions/<int(max=2147483647):version>/predict")
class PredictVersion(MethodView):
    @predict_contract("No such model version")
    def post(self, body: Body, name, version):
        """Predict class probabilities with one version"""
        return predict(body, name, version)


def predict(body: Body, name: str, version: int | None) -> Response:
    """Predict the rows of a predict body with a version (``None``: the latest)."""
    svc = services()
    limit = svc.settings.max_predict_rows
    if body.media_type == CSV:
        if wants_csv():
            return batch_predict_response(name, version, body)  # read in chunks
        rows = tabular.read_csv(
            # parsed as it is read, no further than the row limit; gzip or zstd unpacked,
            # to no more than a plain body may hold (a row may be any length here)
            decompressed(body.stream, "body", svc.settings.max_request_bytes),
            max_rows=limit,
            max_columns=svc.settings.max_columns,
            max_cell_chars=svc.settings.max_cell_chars,
        )
    else:
        rows = body.data
        if len(rows) > limit:
            raise InvalidRequest(f"at most {limit} rows per request", "records")
    result = models.predict(
        svc.database,
        svc.models,
        tenant(),
        name,
        version,
        rows,
        max_columns=svc.settings.max_columns,
        max_cell_chars=svc.settings.max_cell_chars,
    )
    return csv_response(result) if wants_csv() else prediction_response(result)


def prediction_response(result: models.Prediction) -> Response:
    """PredictionSchema's JSON, encoded directly (the schema documents it)."""
    content, headers = prediction_body(result)
    return Response(content, headers=headers)


def prediction_body(result: models.Prediction) -> tuple[bytes, list[tuple[str, str]]]:
    """The JSON answer of a prediction and its headers (service/api/models/fast_predict.py
    sends them without a Flask response)."""
    keys = [label_key(c) for c in result.classes]
    body = {
        "model": {"name": result.name, "version": result.version},
        "classes": result.classes,
        "predictions": [
            {"label": label, "probabilities": dict(zip(keys, row, strict=True))}
            for label, row in zip(result.labels, result.probabilities.tolist(), strict=True)
        ],
    }
    content = orjson.dumps(body)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(content)))]
    if result.ignored:
        headers.append((IGNORED_HEADER, ignored_header(result.ignored)))
    return content, headers
