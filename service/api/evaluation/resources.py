"""Views of /v1/models/{name}/evaluate, .../versions/{v}/evaluate, .../aliases/{a}/evaluate."""

from flask import request
from flask.views import MethodView

from service.api.blueprint import Blueprint, stacked
from service.api.body import CSV, Body
from service.api.evaluation.schemas import (
    EvaluateArgsSchema,
    EvaluateRequestSchema,
    EvaluationSchema,
)
from service.api.services import services, tenant
from service.api.spec import problem_doc
from service.usecases import aliases, evaluation
from service.usecases.batch_predict import CsvLimits

blp = Blueprint(
    "evaluation", __name__, url_prefix="/v1/models", description="Evaluate a model on labelled rows"
)

#: The contract every evaluate endpoint shares: its body, ``?target=``, the answer, the errors.
_evaluate_endpoint = stacked(
    blp.body(
        EvaluateRequestSchema,
        csv=True,
        description="JSON records, or CSV with a header row (read a chunk at a time), each "
        "row with the features and the true label in the target column",
    ),
    blp.arguments(EvaluateArgsSchema, location="query", as_kwargs=True),
    blp.response(200, EvaluationSchema),
    blp.alt_response(400, **problem_doc("Invalid rows or labels; errors names each")),
    blp.alt_response(404, **problem_doc("No such model, version or alias")),
    blp.alt_response(415, **problem_doc("Unsupported Content-Type")),
)


@blp.route("/<string:name>/evaluate")
class EvaluateLatest(MethodView):
    @_evaluate_endpoint
    def post(self, body: Body, name, target=None):
        """Evaluate the latest version on labelled rows: accuracy, log-loss, ECE, confusion"""
        return _evaluate(body, name, None, target)


@blp.route("/<string:name>/versions/<int(max=2147483647):version>/evaluate")
class EvaluateVersion(MethodView):
    @_evaluate_endpoint
    def post(self, body: Body, name, version, target=None):
        """Evaluate one version on labelled rows: accuracy, log-loss, ECE, confusion"""
        return _evaluate(body, name, version, target)


@blp.route("/<string:name>/aliases/<string:alias>/evaluate")
class EvaluateAlias(MethodView):
    @_evaluate_endpoint
    def post(self, body: Body, name, alias, target=None):
        """Evaluate the version an alias points to on labelled rows"""
        aliases.check_alias(alias)
        svc = services()
        version = aliases.resolve_version(svc.database, tenant(), name, alias, svc.models)
        return _evaluate(body, name, version, target)


def _evaluate(body: Body, name: str, version: int | None, target: str | None) -> dict:
    svc = services()
    settings = svc.settings
    if body.media_type == CSV:
        # Read a chunk at a time, so batch predict's body limit applies, not JSON's.
        request.max_content_length = settings.max_batch_predict_bytes
        limits = CsvLimits(
            max_rows=settings.max_batch_predict_rows,
            max_columns=settings.max_columns,
            max_cell_chars=settings.max_cell_chars,
        )
        return evaluation.evaluate_csv(
            svc.database, svc.models, tenant(), name, version, body.stream, limits, target=target
        )
    return evaluation.evaluate_records(
        svc.database,
        svc.models,
        tenant(),
        name,
        version,
        body.data["records"],
        target=target,
        max_rows=settings.max_predict_rows,
        max_columns=settings.max_columns,
        max_cell_chars=settings.max_cell_chars,
    )
