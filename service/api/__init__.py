"""The HTTP API: one package per resource, each a ``resources.py`` (views) and ``schemas.py``."""

from service.api.datasets.resources import blp as datasets_blp
from service.api.evaluation.resources import blp as evaluation_blp
from service.api.exports.resources import blp as exports_blp
from service.api.health.resources import blp as health_blp
from service.api.jobs.resources import blp as jobs_blp
from service.api.models.resources import blp as models_blp
from service.api.oip.resources import blp as oip_blp
from service.api.oip.schemas import InferRequestSchema
from service.api.progress.resources import blp as progress_blp
from service.api.registry.resources import blp as registry_blp
from service.api.spec import Api
from service.api.sweeps.resources import blp as sweeps_blp


def register(api: Api) -> None:
    """Register every blueprint (and the OIP request schema its hand-written docs refer to)."""
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    api.spec.components.schema("InferRequest", schema=InferRequestSchema)
    for blueprint in (
        health_blp,
        datasets_blp,
        jobs_blp,
        progress_blp,
        models_blp,
        registry_blp,
        evaluation_blp,
        exports_blp,
        oip_blp,
        sweeps_blp,
    ):
        api.register_blueprint(blueprint)
