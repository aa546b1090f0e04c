"""Errors are problem+json everywhere; the OpenAPI document describes every route."""

import importlib
import re

import pytest


def test_unknown_route_and_wrong_method_are_problems(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    response = client.put("/v1/datasets")
    assert response.status_code == 405
    assert response.content_type == "application/problem+json"
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("module", "function", "path"),
    [("datasets", "list_datasets", "/v1/datasets"), ("jobs", "list_jobs", "/v1/jobs")],
)
def test_an_unexpected_error_is_a_500_problem_without_internals(
    app, client, monkeypatch, module, function, path
):
    """Not even a credential in the exception's text reaches the body."""

    def boom(*args, **kwargs):
        raise RuntimeError("postgresql://admin:s3cret@db/x exploded: secret internals")

    monkeypatch.setattr(importlib.import_module(f"service.usecases.{module}"), function, boom)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get(path)
    assert response.status_code == 500
    assert response.content_type == "application/problem+json"
    assert "secret" not in response.get_data(as_text=True)


def test_health_and_readiness(client, publisher):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    publisher.down = True
    response = client.get("/readyz")
    assert response.status_code == 503 and "broker" in response.get_json()["detail"]


# Swagger UI and the dashboard, with their assets: HTML for a browser, not API operations.
PAGES_FOR_PEOPLE = ("api-docs.", "dashboard.", "docs_assets.")


def test_openapi_documents_every_route(app, client):
    spec = client.get("/openapi.json").get_json()
    documented = {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static",) or rule.endpoint.startswith(PAGES_FOR_PEOPLE):
            continue
        path = re.sub(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)
    post_jobs = spec["paths"]["/v1/jobs"]["post"]
    assert set(post_jobs["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert "202" in post_jobs["responses"]
    assert client.get("/docs").status_code == 200
