"""GPU jobs on a machine without a GPU: routing to their own queue, the larger default
batch, what happens while no GPU worker runs, and CPU workers that refuse GPU work."""

import dataclasses

import pytest
from sqlalchemy import func, select

from service.db.models import Job
from service.ml.device import GPU_BATCH_SIZE
from service.ml.hyperparameters import RECIPES
from service.usecases import workers
from service.usecases.training import run_training
from tests.support.data import mixed_csv


@pytest.fixture
def dataset(client):
    return client.post("/v1/datasets", data=mixed_csv(), content_type="text/csv").get_json()


def submit(client, dataset, **hyperparameters):
    body = {"dataset_id": dataset["id"], "target": "species", "model_name": "m"}
    return client.post("/v1/jobs", json={**body, "hyperparameters": hyperparameters})


def test_a_gpu_job_goes_to_the_gpu_queue_with_a_larger_default_batch(client, dataset, publisher):
    gpu = submit(client, dataset, device="gpu", epochs=2).get_json()
    chosen = submit(client, dataset, device="gpu", batch_size=64).get_json()
    cpu = submit(client, dataset, epochs=2).get_json()
    assert gpu["hyperparameters"]["device"] == "gpu"
    assert gpu["hyperparameters"]["batch_size"] == GPU_BATCH_SIZE
    assert chosen["hyperparameters"]["batch_size"] == 64
    assert cpu["hyperparameters"]["device"] == "cpu"
    # A CPU job keeps its recipe's batch size (the default recipe's "auto"), not the GPU's.
    assert cpu["hyperparameters"]["batch_size"] == RECIPES[cpu["hyperparameters"]["recipe"]][
        "batch_size"
    ]
    assert publisher.published == [gpu["id"], chosen["id"], cpu["id"]]
    assert publisher.gpu == [gpu["id"], chosen["id"]]


def test_unknown_device_or_precision_is_a_400_naming_it(client, dataset):
    for field, value in (("device", "tpu"), ("precision", "fp8")):
        response = submit(client, dataset, **{field: value})
        assert response.status_code == 400
        assert f"hyperparameters.{field}" in response.get_json()["errors"]


def test_without_a_gpu_worker_a_gpu_job_waits_and_says_so(client, dataset, db, settings):
    job = submit(client, dataset, device="gpu").get_json()
    assert job["status"] == "queued"
    assert any("waiting for a GPU worker" in note for note in job["notes"]), job["notes"]

    workers.register(db, "trainserve-1@gpu-host", "cuda:0", [settings.gpu_queue])
    job = submit(client, dataset, device="gpu").get_json()
    assert not job["notes"]
    # A CPU worker, or a GPU worker on other queues, does not count.
    with db.transaction() as session:
        session.get(workers.Worker, "trainserve-1@gpu-host").queues = [settings.queue]
    workers.register(db, "trainserve-2@cpu-host", "cpu", [settings.queue])
    job = submit(client, dataset, device="gpu").get_json()
    assert job["notes"] and "waiting for a GPU worker" in job["notes"][0]


def test_refuse_mode_answers_409_and_stores_nothing(app, client, dataset, db, settings):
    app.extensions["trainserve"].settings = dataclasses.replace(settings, no_gpu_worker="refuse")
    response = submit(client, dataset, device="gpu")
    assert response.status_code == 409, response.get_json()
    assert "hyperparameters.device" in response.get_json()["detail"]
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    assert submit(client, dataset, device="cpu").status_code == 202
    workers.register(db, "trainserve-1@gpu-host", "cuda:1", [settings.gpu_queue])
    assert submit(client, dataset, device="gpu").status_code == 202


def test_a_gpu_job_that_reaches_a_cpu_worker_goes_back_to_its_queue(
    client, dataset, db, settings, publisher
):
    job = submit(client, dataset, device="gpu", epochs=2).get_json()
    assert run_training(db, settings, job["id"], "w/1", device="cpu") == "released"
    again = client.get(f"/v1/jobs/{job['id']}").get_json()
    assert again["status"] == "queued" and again["epoch"] == 0
    with db.transaction() as session:
        assert session.get(Job, job["id"]).releases == 1  # uses up no attempt


def test_a_cpu_worker_refuses_the_gpu_queue_and_a_missing_gpu(monkeypatch):
    from service.cli import main

    monkeypatch.setenv("TRAINSERVE_DEVICE", "cpu")
    with pytest.raises(SystemExit, match="has no GPU"):
        main(["worker", "--queues", "training,training-gpu"])
    monkeypatch.setenv("TRAINSERVE_DEVICE", "cuda:3")
    with pytest.raises(SystemExit, match="CUDA device"):
        main(["worker"])


def test_the_celery_publisher_routes_by_device(settings):
    from workers.celery_app import create_celery
    from workers.publisher import CeleryPublisher

    app = create_celery(settings)
    sent = []
    app.send_task = lambda name, **kwargs: sent.append(kwargs["queue"])
    CeleryPublisher(app).publish("a")
    CeleryPublisher(app).publish("b", gpu=True)
    assert sent == [settings.queue, settings.gpu_queue]
