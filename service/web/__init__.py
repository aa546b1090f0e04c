"""What the API serves beside the REST resources: the dashboard, the offline assets of
/docs, and /metrics. None of it is in the OpenAPI document: it is for people and
Prometheus, not for API clients."""

from __future__ import annotations

from flask import Flask

from service.web import dashboard, docs, scrape


def init_web(app: Flask) -> None:
    """Register the dashboard, the /docs assets and /metrics on ``app``."""
    app.register_blueprint(dashboard.blp)
    app.register_blueprint(docs.blp)
    app.register_blueprint(scrape.blp)
    scrape.time_predictions(app)
