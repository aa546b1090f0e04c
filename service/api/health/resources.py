"""/healthz (the process answers) and /readyz (database and broker reachable)."""

import logging

from flask.views import MethodView
from marshmallow import fields

from service.api.blueprint import Blueprint
from service.api.schemas import BaseSchema
from service.api.services import services
from service.api.spec import problem_doc
from service.errors import problem

log = logging.getLogger(__name__)

blp = Blueprint("health", __name__, description="Health checks")


class HealthSchema(BaseSchema):
    status = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.String())


@blp.route("/healthz")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    def get(self):
        """Liveness: the API process answers"""
        return {"status": "ok"}


@blp.route("/readyz")
class Ready(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, **problem_doc("A dependency is down"))
    def get(self):
        """Readiness: the database and the broker answer"""
        svc = services()
        checks = {}
        for name, ping in (("database", svc.database.ping), ("broker", svc.publisher.ping)):
            try:
                ping()
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                log.warning("readiness: %s is down: %s", name, exc)
                checks[name] = f"down: {type(exc).__name__}"
        if all(v == "ok" for v in checks.values()):
            return {"status": "ready", "checks": checks}
        down = ", ".join(k for k, v in checks.items() if v != "ok")
        return problem(503, f"not ready: {down} unreachable")
