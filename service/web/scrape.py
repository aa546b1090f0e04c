"""GET /metrics (Prometheus' text format), and the timing of predict requests it reports."""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from flask.views import MethodView

from service import metrics
from service.api.blueprint import Blueprint
from service.api.services import services

blp = Blueprint("metrics", __name__, description="Operations")

# Endpoint → the label it is timed under.
PREDICT_ENDPOINTS = {
    "models.PredictLatest": "predict",
    "models.PredictVersion": "predict_version",
    "registry.PredictAlias": "predict_alias",
    "oip.Infer": "oip_infer",
    "oip.VersionInfer": "oip_infer_version",
}


# Their histogram children, made once: .labels() per request would cost a lock and a lookup.
_TIMERS = {
    endpoint: metrics.PREDICT_SECONDS.labels(label) for endpoint, label in PREDICT_ENDPOINTS.items()
}


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(security=[])
    @blp.response(
        200,
        {"type": "string"},
        content_type="text/plain",
        description="Prometheus text exposition format 0.0.4 (docs/operations.md lists the "
        "series); service-wide counts, no tenant's data",
    )
    def get(self):
        """Prometheus metrics: jobs by status, queue depth, epoch and predict durations"""
        return Response(metrics.render(services().database), content_type=metrics.CONTENT_TYPE)


def observe_predict(endpoint: str, seconds: float) -> None:
    """Count one predict request of ``endpoint`` (one of PREDICT_ENDPOINTS) that took
    ``seconds``."""
    _TIMERS[endpoint].observe(seconds)


def time_predictions(app: Flask) -> None:
    """Observe each predict request's duration: two clock reads and one histogram update
    (about 5 µs in multiprocess mode on this machine)."""

    @app.before_request
    def _start() -> None:
        if request.endpoint in PREDICT_ENDPOINTS:
            g.predict_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("predict_started", None)
        if started is not None:
            observe_predict(request.endpoint, time.perf_counter() - started)
        return response
