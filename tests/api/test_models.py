"""/v1/models and predict, on models trained in-process by the training use case."""

import pytest

from tests.support.data import mixed_csv
from tests.support.training import train_model


@pytest.fixture
def trained(app, client):
    """Two versions of model ``iris``."""
    dataset, _ = train_model(
        app, csv=mixed_csv(), hyperparameters={"learning_rate": 0.01, "seed": 0}
    )
    hyperparameters = {"epochs": 25, "learning_rate": 0.01, "seed": 0}
    train_model(app, dataset_id=dataset["id"], hyperparameters=hyperparameters)
    return dataset


def test_models_and_versions(client, trained):
    assert client.get("/v1/models").get_json()[0]["name"] == "iris"
    assert client.get("/v1/models").get_json()[0]["latest_version"] == 2
    versions = client.get("/v1/models/iris").get_json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    v1 = client.get("/v1/models/iris/versions/1").get_json()
    assert v1["classes"] == ["setosa", "versicolor", "virginica"]
    assert v1["features"] == ["x1", "x2", "colour", "flag"]
    assert v1["input_schema"][2] == {
        "name": "colour",
        "type": "categorical",
        "categories": ["blue", "green", "red"],
    }
    assert v1["hyperparameters"]["epochs"] == 2 and len(v1["weights_sha256"]) == 64
    metrics = v1["metrics"]
    assert metrics["epoch"] == metrics["best_epoch"] and 0 <= metrics["val_accuracy"] <= 1
    assert metrics["n_parameters"] > 0 and metrics["training_time_s"] > 0
    validation = metrics["validation"]
    assert set(validation) == {
        "rows",
        "accuracy",
        "macro_f1",
        "log_loss",
        "ece",
        "reliability",
        "per_class",
        "confusion_matrix",
    }
    assert metrics["recipe"]["recipe"] == "plain" and metrics["folds"] == 0
    assert validation["accuracy"] == pytest.approx(metrics["val_accuracy"])
    assert validation["confusion_matrix"]["labels"] == ["setosa", "versicolor", "virginica"]
    assert client.get("/v1/models/iris/versions/9").status_code == 404
    assert client.get("/v1/models/nope").status_code == 404


def test_predict_latest_returns_probabilities_per_class(client, trained):
    records = [
        {"x1": 2.0, "x2": 1.0, "colour": "red", "flag": True},
        {"x1": -2.0, "x2": -1.0, "colour": "blue", "flag": False},
        {"x1": None, "colour": "never-seen"},
    ]
    response = client.post("/v1/models/iris/predict", json={"records": records})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model"] == {"name": "iris", "version": 2}
    assert body["classes"] == ["setosa", "versicolor", "virginica"]
    assert len(body["predictions"]) == 3
    for row in body["predictions"]:
        assert set(row["probabilities"]) == set(body["classes"])
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    assert body["predictions"][0]["label"] == "virginica"
    assert body["predictions"][1]["label"] == "setosa"


def test_rows_with_every_feature_missing_are_predicted_as_at_training(client, trained):
    response = client.post("/v1/models/iris/predict", json={"records": [{}, {}]})
    assert response.status_code == 200
    assert len(response.get_json()["predictions"]) == 2


def test_predict_a_version_with_a_csv_body(client, trained):
    response = client.post(
        "/v1/models/iris/versions/1/predict",
        data=b"x1,x2,colour,flag\n1.0,NA,green,false\n",
        content_type="text/csv",
    )
    assert response.status_code == 200
    assert response.get_json()["model"] == {"name": "iris", "version": 1}


@pytest.mark.parametrize(
    "body, field",
    [
        ({"records": [{"x1": "abc"}]}, "records[0].x1"),
        ({"records": [{"x1": 1}, {"flag": "maybe"}]}, "records[1].flag"),
        ({"records": [{"petal": 1}]}, "records.petal"),
        ({"records": []}, "records"),
        ({"rows": []}, "rows"),
        ([1, 2], "body"),
    ],
)
def test_bad_predict_requests_are_400_naming_the_field(client, trained, body, field):
    response = client.post("/v1/models/iris/predict", json=body)
    assert response.status_code == 400, response.get_json()
    assert response.content_type == "application/problem+json"
    assert field in response.get_json()["errors"]


def test_predict_unknown_model_is_404_and_wrong_media_type_415(client, trained):
    assert client.post("/v1/models/nope/predict", json={"records": [{}]}).status_code == 404
    response = client.post("/v1/models/iris/predict", data="x", content_type="text/plain")
    assert response.status_code == 415


def test_loaded_models_are_cached(app, client, trained):
    cache = app.extensions["trainserve"].models
    for _ in range(3):
        client.post("/v1/models/iris/predict", json={"records": [{"x1": 1}]})
    assert cache.misses == 1 and cache.hits == 2


ROWS = [
    {"x1": 2.0, "x2": 1.0, "colour": "red", "flag": True},
    {"x1": -2.0, "x2": -1.0, "colour": "blue", "flag": False},
]


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_records": ROWS},
        {
            "dataframe_split": {
                "columns": ["x1", "x2", "colour", "flag"],
                "data": [list(r.values()) for r in ROWS],
                "index": [0, 1],
            }
        },
        {"inputs": {k: [r[k] for r in ROWS] for k in ROWS[0]}},
        {"inputs": ROWS},
    ],
    ids=["dataframe_records", "dataframe_split", "inputs-columns", "inputs-records"],
)
def test_mlflow_scoring_formats_give_the_same_answer_as_records(client, trained, body):
    expected = client.post("/v1/models/iris/predict", json={"records": ROWS}).get_json()
    response = client.post("/v1/models/iris/predict", json=body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == expected


@pytest.mark.parametrize(
    "body, field",
    [
        ({"records": ROWS, "dataframe_records": ROWS}, "body"),
        ({}, "body"),
        ({"dataframe_split": {"columns": ["x1"], "data": [[1, 2]]}}, "dataframe_split.data[0]"),
        ({"inputs": {"x1": [1, 2], "x2": [1]}}, "inputs"),
        ({"inputs": 5}, "inputs"),
    ],
)
def test_malformed_mlflow_bodies_are_400(client, trained, body, field):
    response = client.post("/v1/models/iris/predict", json=body)
    assert response.status_code == 400 and field in response.get_json()["errors"]


def test_the_latest_row_held_is_kept_while_it_is_the_latest(app, trained):
    """The lookup of "latest" ahead of expiry reads the newest version's id, and the full
    row (description, metrics) only when a newer version took its place."""
    from service.usecases import models
    from service.usecases.errors import NotFound

    db = app.extensions["trainserve"].database
    first = models.get_version(db, "default", "iris", 1)
    latest = models.get_version(db, "default", "iris")
    assert latest.version == 2
    assert models.get_version(db, "default", "iris", known=latest) is latest
    newer = models.get_version(db, "default", "iris", known=first)
    assert (newer.id, newer.version) == (latest.id, 2)
    assert newer.description == latest.description and newer.metrics == latest.metrics
    with pytest.raises(NotFound, match="no model 'nope'"):
        models.get_version(db, "default", "nope", known=latest)


def test_latest_is_cached_for_the_resolve_ttl_and_versions_are_not_stale(
    settings, publisher, monkeypatch
):
    """A new version reaches `predict latest` within TRAINSERVE_MODEL_RESOLVE_TTL_SECONDS;
    explicit versions never change, and a missing version is not remembered."""
    import dataclasses
    import time

    from service.app import create_app
    from service.usecases import models

    app = create_app(
        dataclasses.replace(settings, model_resolve_ttl_seconds=60), publisher=publisher
    )
    client = app.test_client()
    rows = {"records": [{"x1": 1.0, "x2": 0.5, "colour": "red", "flag": True}]}

    def version(path):
        response = client.post(path, json=rows)
        return response.get_json()["model"]["version"] if response.status_code == 200 else 404

    dataset, _ = train_model(app, csv=mixed_csv())
    assert version("/v1/models/iris/predict") == 1
    assert version("/v1/models/iris/versions/2/predict") == 404
    train_model(app, dataset_id=dataset["id"])
    assert version("/v1/models/iris/predict") == 1  # within the bound: the cached resolution
    assert version("/v1/models/iris/versions/2/predict") == 2  # 404s are not cached
    now = time.monotonic()
    monkeypatch.setattr(models.time, "monotonic", lambda: now + 61)
    assert version("/v1/models/iris/predict") == 2
    app.extensions["trainserve"].close()
