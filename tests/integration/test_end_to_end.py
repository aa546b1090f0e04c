"""Upload, train on a real Celery worker, watch the metrics, predict: on the embedded
SQLite database and broker, and on PostgreSQL + Redis."""

from __future__ import annotations

import time

import pytest

from service.app import create_app
from service.config import Settings
from service.db.migrate import upgrade
from tests.integration.helpers import submit, wait_finished

pytestmark = pytest.mark.integration


@pytest.fixture
def make_app():
    apps = []

    def make(settings):
        apps.append(create_app(settings))
        return apps[-1]

    yield make
    for app in apps:
        app.extensions["trainserve"].close()


@pytest.fixture(params=["embedded", "postgres+redis"])
def backend_settings(request, tmp_path, queue_name):
    if request.param == "embedded":
        database_url = f"sqlite:///{tmp_path / 'trainserve.db'}"
        broker_url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    else:
        database_url = request.getfixturevalue("postgres_url")
        broker_url = request.getfixturevalue("redis_url")
    upgrade(database_url)
    return Settings.from_env(
        {}, database_url=database_url, broker_url=broker_url, queue=queue_name, auth="off"
    )


def test_train_and_predict_on_a_real_worker(backend_settings, start_worker, make_app):
    app = make_app(backend_settings)
    client = app.test_client()
    worker = start_worker(backend_settings)

    hyperparameters = {
        "recipe": "plain",
        "epochs": 12,
        "learning_rate": 0.01,
        "seed": 3,
        "early_stopping_patience": None,
    }
    job = wait_finished(client, submit(client, hyperparameters, 400, "flowers"))
    assert job["status"] == "succeeded", (job, worker.output()[-3000:])
    assert job["model"] == {"name": "flowers", "version": 1} and job["attempt"] == 1

    epochs = client.get(f"/v1/jobs/{job['id']}/metrics").get_json()["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(1, 13))
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert epochs[-1]["val_accuracy"] > 0.85

    prediction = client.post(
        "/v1/models/flowers/predict",
        json={
            "records": [
                {"x1": 2.5, "x2": 1.0, "colour": "red", "flag": True},
                {"x1": -2.5, "colour": None},
            ]
        },
    ).get_json()
    assert [p["label"] for p in prediction["predictions"]] == ["virginica", "setosa"]
    for row in prediction["predictions"]:
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)
    assert "attempt 1 started" in worker.output()


def test_a_duplicate_message_does_not_train_twice(backend_settings, start_worker, make_app):
    app = make_app(backend_settings)
    client = app.test_client()
    job_id = submit(client, {"recipe": "plain", "epochs": 3}, 100, "dup")
    # The broker delivers at least once: send the same job again before any worker runs.
    app.extensions["trainserve"].publisher.publish(job_id)
    worker = start_worker(backend_settings)
    job = wait_finished(client, job_id)
    assert job["status"] == "succeeded" and job["attempt"] == 1
    deadline = time.monotonic() + 30
    while "message dropped" not in worker.output() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "message dropped" in worker.output()
    assert [v["version"] for v in client.get("/v1/models/dup").get_json()["versions"]] == [1]
