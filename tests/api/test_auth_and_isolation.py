"""API keys and tenant isolation: another tenant's resources are 404, never 403."""

import dataclasses
import time

import pytest

from service.app import create_app
from service.usecases import keys
from tests.support.data import mixed_csv
from tests.support.training import train_model


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


def test_a_key_is_revoked_by_its_prefix_as_printed_with_its_dots(db):
    """`trainserve keys list` prints `ts_AbCdEfGh...`; that field, copied, revokes the key."""
    key, _ = keys.create_key(db, "acme")
    other, _ = keys.create_key(db, "acme")
    assert keys.revoke_key(db, f"{key.prefix}...").id == key.id
    assert keys.revoke_key(db, f" {other.id} ").id == other.id
    with pytest.raises(keys.NotFound):
        keys.revoke_key(db, "ts_...")
    states = {k.id: k.revoked_at is not None for k in keys.list_keys(db)}
    assert states == {key.id: True, other.id: True}


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


# --- scopes -------------------------------------------------------------------------------

def test_every_endpoint_is_public_or_needs_a_named_scope(secured):
    from service.auth import PUBLIC_BLUEPRINTS, PUBLIC_ENDPOINTS, SCOPE_OF

    for rule in secured.url_map.iter_rules():
        blueprint = rule.endpoint.rpartition(".")[0]
        if rule.endpoint in PUBLIC_ENDPOINTS or blueprint in PUBLIC_BLUEPRINTS:
            continue
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (rule.endpoint, method) in SCOPE_OF, (rule.rule, method)


@pytest.fixture
def scoped(secured):
    """Tenant acme's model, dataset and queued job; one key per scope, and one of globex."""
    db = secured.extensions["trainserve"].database
    everything = {"Authorization": f"Bearer {keys.create_key(db, 'acme')[1]}"}
    dataset, job, queued = setup_tenant(secured, everything)
    made = {
        scope: {"Authorization": f"Bearer {keys.create_key(db, 'acme', None, {scope})[1]}"}
        for scope in keys.SCOPES
    }
    made["globex admin"] = {
        "Authorization": f"Bearer {keys.create_key(db, 'globex', None, set(keys.SCOPES))[1]}"
    }
    made["globex predict"] = {
        "Authorization": f"Bearer {keys.create_key(db, 'globex', None, {'predict'})[1]}"
    }
    return {"keys": made, "dataset": dataset["id"], "job": job["id"], "queued": queued["id"]}


PREDICT_BODY = {"json": {"records": [{"x1": 1.0, "x2": 0.5, "colour": "red", "flag": True}]}}
INFER_BODY = {
    "json": {"inputs": [{"name": "x1", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
}

# (method, path, body) → the scope it needs. ``read`` also reads what ``predict`` reads.
SCOPE_ROWS = [
    ("post", "/v1/models/iris/predict", PREDICT_BODY, "predict"),
    ("post", "/v1/models/iris/versions/1/predict", PREDICT_BODY, "predict"),
    ("post", "/v2/models/iris/infer", INFER_BODY, "predict"),
    ("get", "/v2/models/iris", {}, "predict"),
    ("get", "/v2/models/iris/ready", {}, "predict"),
    ("get", "/v1/models", {}, "predict"),
    ("get", "/v1/models/iris/versions/1", {}, "predict"),
    ("get", "/v1/datasets", {}, "read"),
    ("get", "/v1/datasets/{dataset}", {}, "read"),
    ("get", "/v1/jobs/{job}", {}, "read"),
    ("get", "/v1/jobs/{job}/metrics", {}, "read"),
    ("get", "/v1/sweeps", {}, "read"),
    ("get", "/v1/models/iris/versions/1/export?format=safetensors", {}, "read"),
    ("post", "/v1/datasets?name=d", {"data": b"a,y\n1,p\n", "content_type": "text/csv"}, "train"),
    ("post", "/v1/jobs/{queued}/cancel", {}, "train"),
    ("put", "/v1/models/iris/aliases/prod", {"json": {"version": 1}}, "admin"),
    ("delete", "/v1/models/iris/aliases/prod", {}, "admin"),
    ("delete", "/v1/datasets/{dataset}", {}, "admin"),
]


def _allowed(key_scope: str, needed: str, method: str) -> bool:
    return key_scope == needed or (needed == "predict" and method == "get" and key_scope == "read")


@pytest.mark.parametrize("key_scope", ["predict", "read", "train", "admin"])
def test_a_key_does_only_what_its_scopes_allow(secured, scoped, key_scope):
    """Each row with each single-scope key: allowed → answered (2xx, or 409 for the delete
    of a dataset whose job is queued); refused → 403 problem+json naming the scope needed.
    Rows run in order, so the admin deletes come last."""
    client = secured.test_client()
    headers = scoped["keys"][key_scope]
    for method, path, kwargs, needed in SCOPE_ROWS:
        path = path.format(**scoped)
        response = getattr(client, method)(path, headers=headers, **kwargs)
        if _allowed(key_scope, needed, method):
            answered = response.status_code < 400 or response.status_code == 409
            assert answered, (key_scope, method, path, response.get_json())
        else:
            body = response.get_json()
            assert response.status_code == 403, (key_scope, method, path, body)
            assert response.content_type == "application/problem+json"
            assert body["scope"] == needed and f"'{needed}' scope" in body["detail"]


def test_scopes_do_not_cross_tenants(secured, scoped):
    """Another tenant's key, whatever its scopes, still sees acme's things as absent (404);
    a key without the scope is refused before anything is looked up (403)."""
    client = secured.test_client()
    admin, predict = scoped["keys"]["globex admin"], scoped["keys"]["globex predict"]
    dataset = scoped["dataset"]
    assert client.get("/v1/models/iris", headers=predict).status_code == 404
    predicted = client.post("/v1/models/iris/predict", headers=predict, **PREDICT_BODY)
    assert predicted.status_code == 404
    assert client.post("/v2/models/iris/infer", headers=predict, **INFER_BODY).status_code == 404
    assert client.delete(f"/v1/datasets/{dataset}", headers=admin).status_code == 404
    assert client.delete(f"/v1/datasets/{dataset}", headers=predict).status_code == 403
    assert client.get(f"/v1/datasets/{dataset}", headers=predict).status_code == 403


def test_keys_made_before_scopes_keep_full_rights(tmp_path):
    """Migration 0008 gives every existing key all four scopes."""
    from sqlalchemy import text

    from service.db.migrate import upgrade
    from service.db.session import Database

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0007")
    db = Database(url)
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO api_keys (id, tenant, name, prefix, key_hash, created_at) "
                "VALUES ('k1', 'acme', NULL, 'ts_old', :digest, CURRENT_TIMESTAMP)"
            ),
            {"digest": keys.hash_key("ts_old-key")},
        )
    db.close()
    upgrade(url)
    db = Database(url)
    principal = keys.KeyCache(0).authenticate(db, "ts_old-key")
    db.close()
    assert principal.tenant == "acme" and principal.scopes == set(keys.SCOPES)


def test_keys_create_with_scopes_on_the_command_line(tmp_path, capsys, monkeypatch):
    from service import cli
    from service.cli import main

    # The command configures the root logger; here it must not keep pytest's stream.
    monkeypatch.setattr(cli, "_configure_logging", lambda *args: None)

    home = tmp_path / "home"
    create = ["keys", "create", "--tenant", "acme", "--home", str(home), "--scope"]
    assert main([*create, "predict,read"]) == 0
    out = capsys.readouterr().out
    assert "with scopes predict,read" in out
    assert main(["keys", "list", "--home", str(home)]) == 0
    assert "predict,read" in capsys.readouterr().out
    assert main([*create, "root"]) == 1
    assert "'root' is not one" in capsys.readouterr().err
