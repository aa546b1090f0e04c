"""Views of /v1/sweeps."""

from flask import url_for
from flask.views import MethodView

from service.api.blueprint import Blueprint
from service.api.body import Body
from service.api.jobs.schemas import load_hyperparameters
from service.api.services import services, tenant
from service.api.spec import link, links, problem_doc
from service.api.sweeps.schemas import (
    SweepCreateSchema,
    SweepQueryArgsSchema,
    SweepSchema,
    SweepSummarySchema,
)
from service.usecases import sweeps

blp = Blueprint("sweeps", __name__, url_prefix="/v1/sweeps", description="Hyperparameter sweeps")


@blp.route("")
class Sweeps(MethodView):
    @blp.arguments(SweepQueryArgsSchema, location="query")
    @blp.response(200, SweepSummarySchema(many=True))
    def get(self, args):
        """List sweeps, newest first"""
        return sweeps.list_sweeps(services().database, tenant(), **args)

    @blp.body(SweepCreateSchema)
    @blp.response(202, SweepSchema, headers={"Location": {"schema": {"type": "string"}}})
    @blp.doc(
        **links(
            202,
            GetSweep=link("/v1/sweeps/{sweep_id}", sweep_id="$response.body#/id"),
            CancelSweep=link("/v1/sweeps/{sweep_id}/cancel", "post", sweep_id="$response.body#/id"),
        )
    )
    @blp.alt_response(400, **problem_doc("Invalid input; errors names each field"))
    @blp.alt_response(415, **problem_doc("Unsupported Content-Type"))
    def post(self, body: Body):
        """Start a hyperparameter sweep: one training job per trial"""
        svc = services()
        report = sweeps.submit_sweep(
            svc.database,
            svc.settings,
            svc.publisher,
            tenant(),
            sweeps.SweepRequest(**body.data),
            load_hyperparameters,
        )
        return report, {"Location": url_for("sweeps.SweepById", sweep_id=report.id)}


@blp.route("/<string:sweep_id>")
class SweepById(MethodView):
    @blp.response(200, SweepSchema)
    @blp.alt_response(404, **problem_doc("No such sweep"))
    def get(self, sweep_id):
        """Get a sweep's status, counts and leaderboard"""
        return sweeps.get_sweep(services().database, tenant(), sweep_id)


@blp.route("/<string:sweep_id>/cancel")
class SweepCancel(MethodView):
    @blp.response(202, SweepSchema)
    @blp.alt_response(404, **problem_doc("No such sweep"))
    @blp.alt_response(409, **problem_doc("The sweep has already finished"))
    def post(self, sweep_id):
        """Cancel a sweep: no new trials, every unfinished trial cancelled"""
        svc = services()
        return sweeps.cancel_sweep(svc.database, svc.settings, tenant(), sweep_id)
