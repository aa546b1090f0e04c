"""Swagger UI's files for /docs, from the swagger-ui-bundle package: no CDN needed."""

from __future__ import annotations

from flask import Blueprint, send_from_directory
from swagger_ui_bundle import swagger_ui_path

URL_PREFIX = "/docs/assets"
FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")

blp = Blueprint("docs_assets", __name__, url_prefix=URL_PREFIX)


@blp.get("/<any(" + ", ".join(f"'{name}'" for name in FILES) + "):name>")
def asset(name: str):
    return send_from_directory(swagger_ui_path, name, max_age=24 * 3600)
