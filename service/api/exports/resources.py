"""The export view: a model version as a zip (``service.ml.export`` says what is inside)."""

from flask import Response
from flask.views import MethodView

from service.api.blueprint import Blueprint
from service.api.exports.schemas import ExportArgsSchema
from service.api.services import services, tenant
from service.api.spec import problem_doc
from service.usecases import exports

blp = Blueprint("exports", __name__, url_prefix="/v1/models", description="Model exports")

ZIP_SCHEMA = {"type": "string", "format": "binary"}


@blp.route("/<string:name>/versions/<int(max=2147483647):version>/export")
class ExportVersion(MethodView):
    @blp.arguments(ExportArgsSchema, location="query")
    @blp.response(
        200,
        ZIP_SCHEMA,
        content_type="application/zip",
        description="A zip: the network (weights.safetensors, model.onnx or "
        "model.torchscript.pt), model.json, preprocessing.json and a README.md of the inputs",
    )
    @blp.alt_response(400, **problem_doc("Unknown format"))
    @blp.alt_response(404, **problem_doc("No such model version"))
    @blp.alt_response(501, **problem_doc("The format needs an extra that is not installed"))
    def get(self, args, name, version):
        """Download a model version as safetensors, ONNX or TorchScript, with its preprocessing"""
        svc = services()
        result = exports.export_version(svc.database, tenant(), name, version, args["format"])
        return Response(
            result.data,
            mimetype="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{result.filename}"'},
        )
