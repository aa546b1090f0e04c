"""The application factory."""

from __future__ import annotations

import inspect
import logging

from flask import Flask

from service.api import register
from service.api.models.fast_predict import FastPredict
from service.api.services import Services
from service.api.spec import Api
from service.auth import init_auth
from service.config import Settings
from service.db.session import Database
from service.errors import register_error_handlers
from service.usecases.jobs import Publisher
from service.usecases.keys import KeyCache
from service.usecases.models import ModelCache
from service.web import init_web
from service.web.docs import URL_PREFIX as DOCS_ASSETS


class _Flask(Flask):
    """Flask, remembering which views and hooks are coroutines: Flask asks
    ``inspect.iscoroutinefunction`` for every hook and view on every request, about a
    tenth of a one-row predict's time (bench/README.md); there are no async views here."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._coroutine: dict = {}

    def ensure_sync(self, func):
        key = getattr(func, "__func__", func)
        coroutine = self._coroutine.get(key)
        if coroutine is None:
            coroutine = self._coroutine[key] = inspect.iscoroutinefunction(func)
        return self.async_to_sync(func) if coroutine else func


def create_app(config: Settings | None = None, *, publisher: Publisher | None = None) -> Flask:
    """Build the Flask app.

    Parameters
    ----------
    config:
        Settings; default: read from the ``TRAINSERVE_*`` environment.
    publisher:
        Where submitted jobs are sent; default: the Celery broker of ``config``.
    """
    settings = config or Settings.from_env()
    app = _Flask("trainserve")
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        # Streamed uploads (a table as the body, or a form's file) have their own limit.
        MAX_UPLOAD_BYTES=settings.max_upload_bytes,
        API_TITLE="trainserve",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=f"{DOCS_ASSETS}/",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Train PyTorch classifiers on tabular data and serve their "
                "class probabilities. Errors are RFC 9457 application/problem+json. "
                "Every endpoint but the health checks and /metrics needs "
                "'Authorization: Bearer <key>' "
                "unless the server runs with TRAINSERVE_AUTH=off."
            },
            "security": [{"bearerAuth": []}],
        },
    )
    database = Database.of(settings)
    if publisher is None:
        from workers.celery_app import create_celery
        from workers.publisher import CeleryPublisher

        publisher = CeleryPublisher(create_celery(settings, database=database))
    app.extensions["trainserve"] = Services(
        settings=settings,
        database=database,
        publisher=publisher,
        models=ModelCache(settings.model_cache_size, settings.model_resolve_ttl_seconds),
        keys=KeyCache(settings.auth_cache_seconds),
    )
    init_auth(app)
    api = Api(app)
    register(api)
    init_web(app, api)
    register_error_handlers(app)
    # The common JSON predict skips Flask's per-request machinery (fast_predict.py).
    app.wsgi_app = FastPredict(app.wsgi_app, app.extensions["trainserve"])
    logging.getLogger("service").setLevel(settings.log_level)
    return app
