"""What the API serves beside the REST resources: the dashboard and the offline assets
of /docs (pages for people, outside the OpenAPI document), and /metrics for Prometheus
(documented there, with the health checks)."""

from __future__ import annotations

from flask import Flask

from service.api.spec import Api
from service.web import dashboard, docs, scrape


def init_web(app: Flask, api: Api) -> None:
    """Register the dashboard, the /docs assets and /metrics on ``app``."""
    app.register_blueprint(dashboard.blp)
    app.register_blueprint(docs.blp)
    api.register_blueprint(scrape.blp)
    scrape.time_predictions(app)
