"""Views of /v2: KServe's Open Inference Protocol, with its own error body ``{"error"}``."""

import uuid
from importlib import metadata

from flask import Response, jsonify
from flask.views import MethodView
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from service.api.blueprint import Blueprint, stacked
from service.api.oip import body, schemas
from service.api.oip.tensors import (
    TensorError,
    metadata_inputs,
    output_tensors,
    records_from_inputs,
    requested_outputs,
)
from service.api.services import services, tenant
from service.errors import UnsupportedMediaType, flatten_messages
from service.ml import DataError, tabular
from service.usecases import aliases, models
from service.usecases.errors import CorruptModel, InvalidRequest, NotFound

blp = Blueprint(
    "oip", __name__, url_prefix="/v2", description="Open Inference Protocol (KServe v2)"
)

PLATFORM = "trainserve-pytorch-mlp"
SERVER_VERSION = metadata.version("trainserve")
EXTENSIONS = ["binary_tensor_data", "classification", "parameters"]

_ERROR = {"schema": schemas.ErrorSchema, "description": 'The protocol\'s error body {"error"}'}


def _error(status: int, message: str):
    response = jsonify({"error": message})
    response.status_code = status
    return response


@blp.errorhandler(NotFound)
def _not_found(error):
    return _error(404, error.message)


@blp.errorhandler(InvalidRequest)
@blp.errorhandler(DataError)
def _invalid(error):
    where = getattr(error, "field", None)
    return _error(400, f"{where}: {error.message}" if where else error.message)


@blp.errorhandler(TensorError)
def _tensor(error):
    return _error(400, str(error))


@blp.errorhandler(ValidationError)
def _validation(error):
    field, messages = next(iter(flatten_messages(error.messages).items()))
    return _error(400, f"{field}: {messages[0]}")


@blp.errorhandler(UnsupportedMediaType)
def _media(error):
    return _error(415, error.message)


@blp.errorhandler(CorruptModel)
def _corrupt(error):
    return _error(500, error.message)


@blp.errorhandler(HTTPException)
def _http(error):
    return _error(error.code or 500, error.description or error.name)


@blp.route("/health/live")
class Live(MethodView):
    @blp.doc(security=[])
    @blp.response(200, schemas.LiveSchema)
    def get(self):
        """OIP liveness"""
        return {"live": True}


@blp.route("/health/ready")
class Ready(MethodView):
    @blp.doc(security=[])
    @blp.response(200, schemas.ReadySchema)
    @blp.alt_response(503, **_ERROR)
    def get(self):
        """OIP readiness: the database answers"""
        try:
            services().database.ping()
        except Exception:  # noqa: BLE001 - any failure means not ready
            return _error(503, "the database is unavailable")
        return {"ready": True}


def _version(name: str, version: str | None) -> int | None:
    """A version number, or the one an alias points to (resolved once per request)."""
    return aliases.resolve_version(services().database, tenant(), name, version, services().models)


def _metadata(name: str, version: str | None) -> dict:
    db = services().database
    found = models.get_version(db, tenant(), name, _version(name, version))
    if version is None:
        versions = [str(v.version) for v in models.list_versions(db, tenant(), name)]
    else:
        versions = [str(found.version)]
    return {
        "name": found.name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": metadata_inputs(found.input_schema),
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(found.classes)]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
    }


def _infer(name: str, version: str | None) -> Response:
    svc = services()
    request_body = schemas.InferRequestSchema().load(body.read_request())
    found = models.resolve_version(
        svc.database, svc.models, tenant(), name, _version(name, version)
    )
    types = {c["name"]: c["type"] for c in found.input_schema}
    records = records_from_inputs(request_body["inputs"], list(found.features), types)
    if len(records) > svc.settings.max_predict_rows:
        raise TensorError(f"at most {svc.settings.max_predict_rows} rows per request")
    wanted = requested_outputs(request_body)
    frame = tabular.frame_from_records(
        records,
        max_rows=svc.settings.max_predict_rows,
        max_columns=svc.settings.max_columns,
        max_cell_chars=svc.settings.max_cell_chars,
        field="inputs",
    )
    result = models.predict(svc.database, svc.models, tenant(), name, found.version, frame)
    tensors, chunks = output_tensors(result.probabilities, result.labels, result.classes, wanted)
    answer = {
        "model_name": result.name,
        "model_version": str(result.version),
        "id": request_body.get("id") or str(uuid.uuid4()),
        "outputs": tensors,
    }
    if request_body.get("parameters"):
        answer["parameters"] = body.echoed_parameters(request_body["parameters"])
    return body.response(answer, chunks)


_INFER_DOC = {
    "requestBody": {
        "required": True,
        "description": "An inference request as JSON (any or no Content-Type), or, with "
        "the binary tensor data extension, the JSON header followed by raw tensor bytes "
        "(Inference-Header-Content-Length: the header's length in bytes). "
        "Content-Encoding gzip or deflate is read.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "parameters": [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": "Binary tensor data extension: the length of the JSON header",
        }
    ],
    "responses": {
        200: {
            "description": "The inference response; with binary outputs, its JSON header "
            "followed by their bytes (Inference-Header-Content-Length in the answer)",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
}


@blp.route("")
class ServerMetadata(MethodView):
    @blp.doc(security=[])
    @blp.response(200, schemas.ServerMetadataSchema)
    def get(self):
        """OIP server metadata: name, version and the protocol extensions supported"""
        return {"name": "trainserve", "version": SERVER_VERSION, "extensions": EXTENSIONS}


@blp.route("/models/<string:name>")
class Metadata(MethodView):
    @blp.response(200, schemas.ModelMetadataSchema)
    @blp.alt_response(404, **_ERROR)
    def get(self, name):
        """OIP model metadata (every version)"""
        return _metadata(name, None)


@blp.route("/models/<string:name>/versions/<string:version>")
class VersionMetadata(MethodView):
    @blp.response(200, schemas.ModelMetadataSchema)
    @blp.alt_response(404, **_ERROR)
    def get(self, name, version):
        """OIP model metadata of one version"""
        return _metadata(name, version)


@blp.route("/models/<string:name>/ready")
class ModelReady(MethodView):
    @blp.response(200, schemas.ModelReadySchema)
    @blp.alt_response(404, **_ERROR)
    def get(self, name):
        """OIP model readiness (a stored version can be served)"""
        found = models.get_version(services().database, tenant(), name, None)
        return {"name": found.name, "ready": True}


@blp.route("/models/<string:name>/versions/<string:version>/ready")
class VersionReady(MethodView):
    @blp.response(200, schemas.ModelReadySchema)
    @blp.alt_response(404, **_ERROR)
    def get(self, name, version):
        """OIP readiness of one version"""
        found = models.get_version(services().database, tenant(), name, _version(name, version))
        return {"name": found.name, "ready": True}


#: What both infer endpoints declare: the body and binary extension, the answer, the errors.
_infer_contract = stacked(
    blp.doc(**_INFER_DOC),
    blp.response(200, schemas.InferResponseSchema),
    blp.alt_response(400, **_ERROR),
    blp.alt_response(404, **_ERROR),
    blp.alt_response(415, **_ERROR),
)


@blp.route("/models/<string:name>/infer")
class Infer(MethodView):
    @_infer_contract
    def post(self, name):
        """OIP inference with the latest version"""
        return _infer(name, None)


@blp.route("/models/<string:name>/versions/<string:version>/infer")
class VersionInfer(MethodView):
    @_infer_contract
    def post(self, name, version):
        """OIP inference with one version"""
        return _infer(name, version)
