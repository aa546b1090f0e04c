"""Who is calling: ``Authorization: Bearer <key>`` → the key's tenant, in ``g.tenant``.

With ``TRAINSERVE_AUTH=off`` (the default of ``trainserve up``, which listens on
loopback only) every request is the ``default`` tenant. Health checks, the API
documentation, the dashboard's page (its script asks for a key) and /metrics (service-wide
counts, no tenant's data) are public.
"""

from __future__ import annotations

from flask import Flask, g, request

from service.db.models import DEFAULT_TENANT
from service.usecases.errors import Unauthenticated

PUBLIC_ENDPOINTS = frozenset(
    {"health.Health", "health.Ready", "oip.Live", "oip.Ready", "metrics.Metrics"}
)
PUBLIC_BLUEPRINTS = frozenset({"api-docs", "dashboard", "docs_assets"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def init_auth(app: Flask) -> None:
    """Authenticate every request to a non-public endpoint before its view runs."""

    @app.before_request
    def _authenticate() -> None:
        endpoint = request.endpoint
        if (
            endpoint is None
            or endpoint in PUBLIC_ENDPOINTS
            or request.blueprint in PUBLIC_BLUEPRINTS
        ):
            return
        services = app.extensions["trainserve"]
        if services.settings.auth == "off":
            g.tenant = DEFAULT_TENANT
            return
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>'")
        tenant = services.keys.authenticate(services.database, key.strip())
        if tenant is None:
            raise Unauthenticated("the API key is not valid (unknown or revoked)")
        g.tenant = tenant
