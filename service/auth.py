"""Who is calling: ``Authorization: Bearer <key>`` → the key's tenant, in ``g.tenant``, and
what it may do: each endpoint needs one scope (``SCOPE_OF``), which the key must hold,
else 403 naming the scope.

With ``TRAINSERVE_AUTH=off`` (the default of ``trainserve up``, which listens on
loopback only) every request is the ``default`` tenant. Health checks, the API
documentation, the dashboard's page (its script asks for a key) and /metrics (service-wide
counts, no tenant's data) are public.
"""

from __future__ import annotations

from flask import Flask, g, request

from service.config import AuthMode
from service.db.models import DEFAULT_TENANT
from service.usecases.errors import Forbidden, Unauthenticated
from service.usecases.keys import SCOPES

PUBLIC_ENDPOINTS = frozenset(
    {
        "health.Health",
        "health.Ready",
        "oip.Live",
        "oip.Ready",
        "oip.ServerMetadata",
        "metrics.Metrics",
    }
)
PUBLIC_BLUEPRINTS = frozenset({"api-docs", "dashboard", "docs_assets"})
ALL_SCOPES = frozenset(SCOPES)

# (endpoint, method) → the scope it needs. ``predict`` serves predictions and reads models
# (an application that predicts can see what it calls); ``read`` reads everything;
# ``train`` creates and cancels datasets, jobs and sweeps; ``admin`` deletes and moves
# aliases. A test checks that every endpoint that is not public is here.
_PREDICT_ROUTES = (
    "models.PredictLatest",
    "models.PredictVersion",
    "registry.PredictAlias",
    "oip.Infer",
    "oip.VersionInfer",
    # Evaluate predicts labelled rows and compares; it changes nothing.
    "evaluation.EvaluateLatest",
    "evaluation.EvaluateVersion",
    "evaluation.EvaluateAlias",
)
_MODEL_READS = (
    "models.Models",
    "models.ModelByName",
    "models.ModelVersionView",
    "registry.Versions",
    "registry.Compare",
    "registry.AliasView",
    "oip.Metadata",
    "oip.VersionMetadata",
    "oip.ModelReady",
    "oip.VersionReady",
)
_READS = (
    "datasets.Datasets",
    "datasets.DatasetById",
    "jobs.Jobs",
    "jobs.JobById",
    "jobs.JobMetrics",
    "progress.JobEvents",
    "progress.JobPlot",
    "sweeps.Sweeps",
    "sweeps.SweepById",
    "exports.ExportVersion",
)
_TRAINING = (
    ("datasets.Datasets", "POST"),
    ("jobs.Jobs", "POST"),
    ("jobs.JobCancel", "POST"),
    ("sweeps.Sweeps", "POST"),
    ("sweeps.SweepCancel", "POST"),
)
_ADMIN = (
    ("datasets.DatasetById", "DELETE"),
    ("registry.AliasView", "PUT"),
    ("registry.AliasView", "DELETE"),
)
SCOPE_OF: dict[tuple[str, str], str] = {
    **{(e, "POST"): "predict" for e in _PREDICT_ROUTES},
    **{(e, "GET"): "predict" for e in _MODEL_READS},
    **{(e, "GET"): "read" for e in _READS},
    **{key: "train" for key in _TRAINING},
    **{key: "admin" for key in _ADMIN},
}

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
        if services.settings.auth == AuthMode.OFF:
            g.tenant = DEFAULT_TENANT
            g.scopes = ALL_SCOPES
            return
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>'")
        principal = services.keys.authenticate(services.database, key.strip())
        if principal is None:
            raise Unauthenticated("the API key is not valid (unknown or revoked)")
        require_scope(endpoint, request.method, principal.scopes)
        g.tenant = principal.tenant
        g.scopes = principal.scopes


def scope_needed(endpoint: str, method: str) -> str:
    """The scope an endpoint needs (``admin`` for one this table does not know)."""
    return SCOPE_OF.get((endpoint, "GET" if method == "HEAD" else method), "admin")


def require_scope(endpoint: str, method: str, scopes: frozenset[str]) -> None:
    """403 naming the scope unless ``scopes`` allow ``method`` on ``endpoint``."""
    needed = scope_needed(endpoint, method)
    if needed in scopes:
        return
    if needed == "predict" and method in ("GET", "HEAD") and "read" in scopes:
        return  # reading models is reading
    have = ", ".join(s for s in SCOPES if s in scopes) or "none"
    raise Forbidden(
        f"this API key lacks the {needed!r} scope, which {method} {request.path} needs "
        f"(the key's scopes: {have})",
        needed,
    )
