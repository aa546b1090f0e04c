"""GET /metrics, and the timing of predict requests it reports."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request

from service import metrics
from service.api.common import services

blp = Blueprint("metrics", __name__)

# Endpoint → the label it is timed under.
PREDICT_ENDPOINTS = {
    "models.PredictLatest": "predict",
    "models.PredictVersion": "predict_version",
    "oip.Infer": "oip_infer",
    "oip.VersionInfer": "oip_infer_version",
}


@blp.get("/metrics")
def scrape():
    return Response(metrics.render(services().database), content_type=metrics.CONTENT_TYPE)


def time_predictions(app: Flask) -> None:
    """Observe each predict request's duration: a clock read and one histogram update."""

    @app.before_request
    def _start() -> None:
        if request.endpoint in PREDICT_ENDPOINTS:
            g.predict_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("predict_started", None)
        if started is not None:
            metrics.PREDICT_SECONDS.labels(PREDICT_ENDPOINTS[request.endpoint]).observe(
                time.perf_counter() - started
            )
        return response
