"""API keys and tenant isolation: another tenant's resources are 404, never 403."""

import dataclasses
import time

import pytest

from service.app import create_app
from service.usecases import keys
from tests.data import mixed_csv
from tests.helpers import train_model


@pytest.fixture
def secured(settings, publisher):
    app = create_app(dataclasses.replace(settings, auth="required"), publisher=publisher)
    yield app
    app.extensions["trainserve"].close()


@pytest.fixture
def tenants(secured):
    db = secured.extensions["trainserve"].database
    return {
        name: {"Authorization": f"Bearer {keys.create_key(db, name)[1]}"}
        for name in ("acme", "globex")
    }


def test_no_key_or_a_wrong_key_is_401_problem(secured):
    client = secured.test_client()
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        response = client.get("/v1/datasets", headers=headers)
        assert response.status_code == 401
        assert response.content_type == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_health_and_docs_are_public(secured):
    client = secured.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    spec = client.get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["paths"]["/healthz"]["get"]["security"] == []


@pytest.fixture
def key_with_cache(settings, publisher):
    """(client, headers, revoke) for an app whose auth cache lasts the given seconds."""
    apps = []

    def make(seconds: float):
        app = create_app(
            dataclasses.replace(settings, auth="required", auth_cache_seconds=seconds),
            publisher=publisher,
        )
        apps.append(app)
        db = app.extensions["trainserve"].database
        key, plain = keys.create_key(db, "acme")
        return app.test_client(), {"Authorization": f"Bearer {plain}"}, (
            lambda: keys.revoke_key(db, key.prefix)
        )

    yield make
    for app in apps:
        app.extensions["trainserve"].close()


def test_a_revoked_key_stops_working_within_the_auth_cache_bound(key_with_cache, monkeypatch):
    """Each API process keeps a good key's tenant for TRAINSERVE_AUTH_CACHE_SECONDS."""
    client, headers, revoke = key_with_cache(2.0)
    assert client.get("/v1/datasets", headers=headers).status_code == 200
    revoke()
    assert client.get("/v1/datasets", headers=headers).status_code == 200  # cached
    now = time.monotonic()
    monkeypatch.setattr(keys.time, "monotonic", lambda: now + 2.01)
    assert client.get("/v1/datasets", headers=headers).status_code == 401


def test_with_the_auth_cache_off_a_revoked_key_stops_at_once(key_with_cache):
    client, headers, revoke = key_with_cache(0)
    assert client.get("/v1/datasets", headers=headers).status_code == 200
    revoke()
    assert client.get("/v1/datasets", headers=headers).status_code == 401


def test_keys_are_stored_only_as_hashes(secured):
    db = secured.extensions["trainserve"].database
    _, plain = keys.create_key(db, "acme")
    from sqlalchemy import text

    with db.transaction() as session:
        rows = session.execute(text("SELECT * FROM api_keys")).all()
    assert plain not in repr(rows) and keys.hash_key(plain) in repr(rows)


def setup_tenant(app, headers, name="iris"):
    client = app.test_client()
    dataset, job = train_model(app, name=name, headers=headers)
    queued = client.post(
        "/v1/jobs",
        json={"dataset_id": dataset["id"], "target": "species", "model_name": name},
        headers=headers,
    ).get_json()
    return dataset, job, queued


def test_tenants_see_only_their_own(secured, tenants):
    client = secured.test_client()
    acme, globex = tenants["acme"], tenants["globex"]
    a_dataset, a_job, a_queued = setup_tenant(secured, acme)
    g_dataset, g_job, _ = setup_tenant(secured, globex)

    # Model names are per tenant: both have their own "iris" version 1.
    for headers in (acme, globex):
        assert (
            client.get("/v1/models/iris", headers=headers).get_json()["versions"][0]["version"] == 1
        )
    # Listings show only one's own.
    assert [d["id"] for d in client.get("/v1/datasets", headers=acme).get_json()] == [
        a_dataset["id"]
    ]
    assert {j["id"] for j in client.get("/v1/jobs", headers=acme).get_json()} == {
        a_job["id"],
        a_queued["id"],
    }
    assert [m["name"] for m in client.get("/v1/models", headers=globex).get_json()] == ["iris"]

    # Every read, predict, cancel and delete of another tenant's resources is a 404.
    cross = [
        ("get", f"/v1/datasets/{a_dataset['id']}", None),
        ("delete", f"/v1/datasets/{a_dataset['id']}", None),
        ("get", f"/v1/jobs/{a_job['id']}", None),
        ("get", f"/v1/jobs/{a_job['id']}/metrics", None),
        ("post", f"/v1/jobs/{a_queued['id']}/cancel", None),
    ]
    for method, path, body in cross:
        response = getattr(client, method)(path, headers=globex, json=body)
        assert response.status_code == 404, (method, path)
        assert response.content_type == "application/problem+json"
    # A job on another tenant's dataset is refused as if the dataset did not exist.
    response = client.post(
        "/v1/jobs",
        json={"dataset_id": a_dataset["id"], "target": "species", "model_name": "x"},
        headers=globex,
    )
    assert response.status_code == 400 and "dataset_id" in response.get_json()["errors"]
    # Nothing of acme's changed.
    assert client.get(f"/v1/datasets/{a_dataset['id']}", headers=acme).status_code == 200
    assert client.get(f"/v1/jobs/{a_queued['id']}", headers=acme).get_json()["status"] == "queued"


def test_predict_and_model_reads_across_tenants_are_404(secured, tenants):
    client = secured.test_client()
    setup_tenant(secured, tenants["acme"], name="only-acme")
    globex = tenants["globex"]
    for path in (
        "/v1/models/only-acme",
        "/v1/models/only-acme/versions/1",
        "/v2/models/only-acme",
        "/v2/models/only-acme/ready",
        "/v2/models/only-acme/versions/1",
    ):
        assert client.get(path, headers=globex).status_code == 404
    for path in ("/v1/models/only-acme/predict", "/v1/models/only-acme/versions/1/predict"):
        response = client.post(path, json={"records": [{"x1": 1}]}, headers=globex)
        assert response.status_code == 404
    infer = {"inputs": [{"name": "x1", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    assert client.post("/v2/models/only-acme/infer", json=infer, headers=globex).status_code == 404
    assert client.post("/v2/models/only-acme/infer", json=infer).status_code == 401
    assert client.get("/v2/health/live").status_code == 200  # public, like /healthz
    response = client.post(
        "/v1/models/only-acme/predict", json={"records": [{"x1": 1}]}, headers=tenants["acme"]
    )
    assert response.status_code == 200


def test_idempotency_keys_are_per_tenant(secured, tenants):
    client = secured.test_client()
    ids = []
    for headers in tenants.values():
        dataset = client.post(
            "/v1/datasets", data=mixed_csv(50), content_type="text/csv", headers=headers
        ).get_json()
        body = {"dataset_id": dataset["id"], "target": "species", "model_name": "m"}
        job = client.post(
            "/v1/jobs", json=body, headers={**headers, "Idempotency-Key": "same"}
        ).get_json()
        ids.append(job["id"])
    assert ids[0] != ids[1]
