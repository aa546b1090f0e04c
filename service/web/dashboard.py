"""The dashboard: one static page and its ES modules and styles, at /ui (``/`` leads there).

Everything the page does goes through the public v1 API with the caller's key; these
routes only serve files, under a Content-Security-Policy that allows nothing but this
origin (no inline script or style, no other host)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, redirect, send_from_directory, url_for

STATIC = Path(__file__).parent / "static"
ASSET_SUFFIXES = (".js", ".css")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

blp = Blueprint("dashboard", __name__)


@blp.get("/")
def home():
    return redirect(url_for("dashboard.page"))


@blp.get("/ui")
def page():
    return _static("dashboard.html")


@blp.get("/ui/<path:name>")
def asset(name: str):
    if not name.endswith(ASSET_SUFFIXES):
        abort(404)
    return _static(name)


def _static(name: str):
    # send_from_directory refuses paths that leave STATIC (a 404).
    response = send_from_directory(STATIC, name, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
