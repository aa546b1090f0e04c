"""Views of /v1/models/{name}/evaluate, .../versions/{v}/evaluate, .../aliases/{a}/evaluate."""

from flask import request
from flask.views import MethodView

from service.api.common import (
    Blueprint,
    body_kind,
    json_body,
    problem_doc,
    request_body_doc,
    services,
    tenant,
)
from service.api.evaluation.schemas import (
    EvaluateArgsSchema,
    EvaluateRequestSchema,
    EvaluationSchema,
)
from service.usecases import aliases, evaluation
from service.usecases.batch_predict import CsvLimits

blp = Blueprint(
    "evaluation", __name__, url_prefix="/v1/models", description="Evaluate a model on labelled rows"
)

_DOC = request_body_doc(
    "EvaluateRequest",
    "text/csv",
    description="JSON records, or CSV with a header row (read a chunk at a time), each "
    "row with the features and the true label in the target column",
)


def _errors(blueprint_view):
    blueprint_view = blp.alt_response(
        400, **problem_doc("Invalid rows or labels; errors names the field")
    )(blueprint_view)
    blueprint_view = blp.alt_response(404, **problem_doc("No such model, version or alias"))(
        blueprint_view
    )
    return blp.alt_response(415, **problem_doc("Unsupported Content-Type"))(blueprint_view)


@blp.route("/<string:name>/evaluate")
class EvaluateLatest(MethodView):
    @blp.doc(**_DOC)
    @blp.arguments(EvaluateArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, EvaluationSchema)
    @_errors
    def post(self, name, target=None):
        """Evaluate the latest version on labelled rows: accuracy, log-loss, ECE, confusion"""
        return _evaluate(name, None, target)


@blp.route("/<string:name>/versions/<int(max=2147483647):version>/evaluate")
class EvaluateVersion(MethodView):
    @blp.doc(**_DOC)
    @blp.arguments(EvaluateArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, EvaluationSchema)
    @_errors
    def post(self, name, version, target=None):
        """Evaluate one version on labelled rows: accuracy, log-loss, ECE, confusion"""
        return _evaluate(name, version, target)


@blp.route("/<string:name>/aliases/<string:alias>/evaluate")
class EvaluateAlias(MethodView):
    @blp.doc(**_DOC)
    @blp.arguments(EvaluateArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, EvaluationSchema)
    @_errors
    def post(self, name, alias, target=None):
        """Evaluate the version an alias points to on labelled rows"""
        aliases.check_alias(alias)
        svc = services()
        version = aliases.resolve_version(svc.database, tenant(), name, alias, svc.models)
        return _evaluate(name, version, target)


def _evaluate(name: str, version: int | None, target: str | None) -> dict:
    svc = services()
    settings = svc.settings
    if body_kind("application/json", "text/csv") == "text/csv":
        request.max_content_length = settings.max_batch_predict_bytes
        limits = CsvLimits(
            max_rows=settings.max_batch_predict_rows,
            max_columns=settings.max_columns,
            max_cell_chars=settings.max_cell_chars,
        )
        return evaluation.evaluate_csv(
            svc.database,
            svc.models,
            tenant(),
            name,
            version,
            request.stream,
            limits,
            target=target,
        )
    records = EvaluateRequestSchema().load(json_body())["records"]
    return evaluation.evaluate_records(
        svc.database,
        svc.models,
        tenant(),
        name,
        version,
        records,
        target=target,
        max_rows=settings.max_predict_rows,
        max_columns=settings.max_columns,
        max_cell_chars=settings.max_cell_chars,
    )
