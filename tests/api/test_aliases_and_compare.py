"""Model aliases (set, move, delete, predict by alias, OIP by alias) and version comparison."""

from __future__ import annotations

import threading

import pytest

from tests.support.data import mixed_csv
from tests.support.training import train_model

RECORDS = {"records": [{"x1": 1.5, "x2": 0.2, "colour": "red", "flag": True}]}


@pytest.fixture
def versions(app):
    """Three versions of ``iris`` with different learning rates and widths."""
    dataset, _ = train_model(
        app, csv=mixed_csv(150), hyperparameters={"learning_rate": 0.03, "epochs": 4, "seed": 0}
    )
    for hyperparameters in (
        {"learning_rate": 1e-5, "epochs": 4, "seed": 0},
        {"learning_rate": 0.01, "epochs": 4, "seed": 0, "hidden_layers": [8]},
    ):
        train_model(app, dataset_id=dataset["id"], hyperparameters=hyperparameters)
    return [1, 2, 3]


def test_set_move_list_and_delete_an_alias(client, versions):
    response = client.put("/v1/models/iris/aliases/champion", json={"version": 1})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["alias"], body["version"]) == ("iris", "champion", 1)
    assert client.put("/v1/models/iris/aliases/canary", json={"version": 3}).status_code == 200
    assert client.get("/v1/models/iris").get_json()["aliases"] == {"canary": 3, "champion": 1}
    assert client.get("/v1/models/iris/aliases/champion").get_json()["version"] == 1
    assert client.put("/v1/models/iris/aliases/champion", json={"version": 2}).status_code == 200
    assert client.get("/v1/models/iris/aliases/champion").get_json()["version"] == 2
    assert client.delete("/v1/models/iris/aliases/canary").status_code == 204
    assert client.get("/v1/models/iris").get_json()["aliases"] == {"champion": 2}
    assert client.delete("/v1/models/iris/aliases/canary").status_code == 404
    assert client.get("/v1/models/iris/aliases/canary").status_code == 404
    # Versions are untouched by aliases.
    assert len(client.get("/v1/models/iris").get_json()["versions"]) == 3


@pytest.mark.parametrize(
    "alias, body, status, field",
    [
        ("champion", {"version": 9}, 404, None),
        ("42", {"version": 1}, 400, "alias"),
        ("latest", {"version": 1}, 400, "alias"),
        ("-x", {"version": 1}, 400, "alias"),
        ("champion", {"version": "one"}, 400, "version"),
        ("champion", {}, 400, "version"),
    ],
)
def test_bad_aliases_are_refused(client, versions, alias, body, status, field):
    response = client.put(f"/v1/models/iris/aliases/{alias}", json=body)
    assert response.status_code == status, response.get_json()
    assert response.content_type == "application/problem+json"
    if field:
        assert field in response.get_json()["errors"]
    assert client.get("/v1/models/iris").get_json()["aliases"] == {}


def test_predict_by_alias_on_v1_and_oip(client, versions):
    client.put("/v1/models/iris/aliases/champion", json={"version": 2})
    by_alias = client.post("/v1/models/iris/aliases/champion/predict", json=RECORDS).get_json()
    by_version = client.post("/v1/models/iris/versions/2/predict", json=RECORDS).get_json()
    assert by_alias == by_version and by_alias["model"]["version"] == 2
    assert client.post("/v1/models/iris/aliases/nope/predict", json=RECORDS).status_code == 404
    assert client.post("/v1/models/iris/aliases/2/predict", json=RECORDS).status_code == 400

    as_csv = client.post(
        "/v1/models/iris/aliases/champion/predict",
        data="x1,x2,colour,flag\n1.5,0.2,red,true\n",
        content_type="text/csv",
        headers={"Accept": "text/csv"},
        buffered=True,
    )
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    header, row = as_csv.get_data(as_text=True).splitlines()
    assert header == "label," + ",".join(f"p_{c}" for c in by_alias["classes"])
    assert row.split(",")[0] == by_alias["predictions"][0]["label"]

    meta = client.get("/v2/models/iris/versions/champion").get_json()
    assert meta["versions"] == ["2"]
    assert client.get("/v2/models/iris/versions/champion/ready").status_code == 200
    infer = {
        "inputs": [
            {"name": "x1", "shape": [1], "datatype": "FP32", "data": [1.5]},
            {"name": "x2", "shape": [1], "datatype": "FP32", "data": [0.2]},
            {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]},
            {"name": "flag", "shape": [1], "datatype": "BOOL", "data": [True]},
        ]
    }
    response = client.post("/v2/models/iris/versions/champion/infer", json=infer).get_json()
    assert response["model_version"] == "2"
    probabilities = response["outputs"][0]["data"]
    expected = by_alias["predictions"][0]["probabilities"]
    assert probabilities == pytest.approx([expected[c] for c in by_alias["classes"]], abs=1e-6)
    missing = client.post("/v2/models/iris/versions/nope/infer", json=infer)
    assert missing.status_code == 404 and "no version or alias" in missing.get_json()["error"]


def test_an_alias_moves_atomically_under_concurrent_predictions(app, versions):
    """While the alias flips between versions 1 and 3, every prediction by alias succeeds
    and answers with one of the two versions (never a 404, never another version)."""
    client = app.test_client()
    client.put("/v1/models/iris/aliases/champion", json={"version": 1})
    seen: list[int] = []
    failures: list[int] = []
    stop = threading.Event()

    def predict():
        reader = app.test_client()
        while not stop.is_set():
            response = reader.post("/v1/models/iris/aliases/champion/predict", json=RECORDS)
            if response.status_code != 200:
                failures.append(response.status_code)
            else:
                seen.append(response.get_json()["model"]["version"])

    readers = [threading.Thread(target=predict) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for i in range(30):
            version = 3 if i % 2 == 0 else 1
            assert (
                client.put(
                    "/v1/models/iris/aliases/champion", json={"version": version}
                ).status_code
                == 200
            )
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert failures == [] and seen and set(seen) <= {1, 3}
    assert client.get("/v1/models/iris/aliases/champion").get_json()["version"] == 1


def test_versions_ordered_by_a_metric(client, versions):
    def order(query):
        response = client.get(f"/v1/models/iris/versions?order_by={query}")
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    by_accuracy = order("-val_accuracy")
    accuracies = [v["metrics"]["val_accuracy"] for v in by_accuracy]
    assert accuracies == sorted(accuracies, reverse=True)
    by_loss = order("val_loss")
    losses = [v["metrics"]["val_loss"] for v in by_loss]
    assert losses == sorted(losses) and by_loss[-1]["version"] == 2  # lr 1e-5 barely learns
    f1 = [v["metrics"]["validation"]["macro_f1"] for v in order("-macro_f1")]
    assert f1 == sorted(f1, reverse=True)
    assert [v["version"] for v in order("version")] == [1, 2, 3]
    assert [v["version"] for v in order("-created_at")] == [3, 2, 1]
    assert [v["version"] for v in client.get("/v1/models/iris/versions").get_json()] == [3, 2, 1]
    bad = client.get("/v1/models/iris/versions?order_by=colour")
    assert bad.status_code == 400 and "order_by" in bad.get_json()["errors"]
    assert client.get("/v1/models/nope/versions").status_code == 404


def test_compare_versions_side_by_side(client, versions):
    client.put("/v1/models/iris/aliases/champion", json={"version": 3})
    response = client.get("/v1/models/iris/compare?versions=1,2,champion")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert [v["version"] for v in body["versions"]] == [1, 2, 3]
    assert body["differing_hyperparameters"] == ["hidden_layers", "learning_rate"]
    assert [v["hyperparameters"]["learning_rate"] for v in body["versions"]] == [0.03, 1e-5, 0.01]
    for entry in body["versions"]:
        assert set(entry["metrics"]) >= {"val_accuracy", "val_loss", "macro_f1", "log_loss"}
    losses = {v["version"]: v["metrics"]["val_loss"] for v in body["versions"]}
    assert body["best"]["val_loss"] == min(losses, key=losses.get)
    accuracies = {v["version"]: v["metrics"]["val_accuracy"] for v in body["versions"]}
    assert accuracies[body["best"]["val_accuracy"]] == max(accuracies.values())

    assert client.get("/v1/models/iris/compare?versions=1").status_code == 400
    assert client.get("/v1/models/iris/compare?versions=3,champion").status_code == 400
    assert client.get("/v1/models/iris/compare?versions=1,9").status_code == 404
    assert client.get("/v1/models/iris/compare?versions=1,gold").status_code == 404
    assert client.get("/v1/models/iris/compare").status_code == 400


def test_a_moved_alias_reaches_predict_within_the_resolve_ttl(app, client, versions, monkeypatch):
    """Each API process keeps an alias's version for TRAINSERVE_MODEL_RESOLVE_TTL_SECONDS
    (1 s by default); the move itself is one atomic statement."""
    import time

    from service.usecases import models

    def served():
        response = client.post("/v1/models/iris/aliases/champion/predict", json=RECORDS)
        return response.get_json()["model"]["version"]

    cache = app.extensions["trainserve"].models
    assert cache.resolve_ttl == 1.0  # the default bound
    monkeypatch.setattr(cache, "resolve_ttl", 60.0)  # so that a slow machine keeps the entry
    assert client.put("/v1/models/iris/aliases/champion", json={"version": 1}).status_code == 200
    assert served() == 1
    assert client.put("/v1/models/iris/aliases/champion", json={"version": 2}).status_code == 200
    assert client.get("/v1/models/iris/aliases/champion").get_json()["version"] == 2
    assert served() == 1  # this process's resolution, younger than the bound
    now = time.monotonic()
    monkeypatch.setattr(models.time, "monotonic", lambda: now + 60.01)
    assert served() == 2
