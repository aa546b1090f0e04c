"""The dashboard: one static page and its script and styles, at /ui (``/`` leads there)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, redirect, send_from_directory, url_for

STATIC = Path(__file__).parent / "static"

blp = Blueprint("dashboard", __name__)


@blp.get("/")
def home():
    return redirect(url_for("dashboard.page"))


@blp.get("/ui")
def page():
    return _static("dashboard.html")


@blp.get("/ui/<any('dashboard.js', 'dashboard.css'):name>")
def asset(name: str):
    return _static(name)


def _static(name: str):
    response = send_from_directory(STATIC, name, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"
    )
    return response
