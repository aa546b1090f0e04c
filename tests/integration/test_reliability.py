"""The guarantees, each proved by injecting the fault for real: killed and stopped
workers, duplicate messages, a broker down at submit, PostgreSQL and Redis restarts,
a burst of jobs, cancel on a live worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from sqlalchemy import func, select

from service.config import Settings
from service.db.migrate import upgrade
from service.db.models import EpochMetric, Job
from service.db.session import Database
from service.usecases.upkeep import upkeep_pass
from tests.integration.helpers import (
    job_of,
    slow_job,
    submit,
    wait_epoch,
    wait_finished,
    wait_until,
)
from tests.support.data import mixed_csv

pytestmark = pytest.mark.integration

# Short leases so a dead worker's job is requeued in seconds, not a minute.
FAST = {"lease_seconds": 3.0, "republish_after_seconds": 2.0, "db_retry_seconds": 60.0}
# Exactly 25 epochs (no early stopping), slow enough to be interrupted mid-way.
SLOW_JOB = slow_job(25, 128, 5)


def make_settings(database_url: str, broker_url: str, queue: str) -> Settings:
    upgrade(database_url)
    return Settings.from_env(
        {}, database_url=database_url, broker_url=broker_url, queue=queue, auth="off", **FAST
    )


@pytest.fixture
def pg_redis(postgres_url, redis_url, queue_name):
    return make_settings(postgres_url, redis_url, queue_name)


@pytest.fixture(params=["embedded", "postgres+redis"])
def any_backend(request, tmp_path, queue_name):
    if request.param == "embedded":
        return make_settings(
            f"sqlite:///{tmp_path / 'trainserve.db'}",
            f"sqla+sqlite:///{tmp_path / 'broker.db'}",
            queue_name,
        )
    return request.getfixturevalue("pg_redis")


@pytest.fixture
def service(api_service):
    """An app and its client for given settings (here, not conftest's `trainserve up`)."""
    return api_service


def epochs_of(client, job_id):
    return [e["epoch"] for e in client.get(f"/v1/jobs/{job_id}/metrics").get_json()["epochs"]]


def sweep_until(svc, predicate, what, timeout=60):
    """Run sweeper passes (as `trainserve sweeper` would) until ``predicate`` holds."""

    def step():
        upkeep_pass(svc.database, svc.settings, svc.publisher)
        return predicate()

    return wait_until(step, timeout, what)


def test_a_killed_worker_costs_at_most_one_epoch(any_backend, start_worker, service):
    client, svc = service(any_backend)
    first = start_worker(any_backend)
    job_id = submit(client, SLOW_JOB)
    wait_epoch(client, job_id, 4)
    first.kill()
    killed = time.monotonic()
    killed_at = job_of(client, job_id)["epoch"]

    second = start_worker(any_backend)
    sweep_until(svc, lambda: job_of(client, job_id)["attempt"] == 2, "a second attempt")
    running_again = time.monotonic() - killed
    job = wait_finished(client, job_id)
    assert job["status"] == "succeeded", (job, second.output()[-3000:])
    assert job["attempt"] == 2
    assert epochs_of(client, job_id) == list(range(1, 26))
    resumed = re.search(r"resumed from checkpoint at epoch (\d+)", second.output())
    assert resumed, second.output()[-3000:]
    assert killed_at - 1 <= int(resumed.group(1)) <= killed_at
    version = client.get("/v1/models/m/versions/1").get_json()
    assert version["metrics"]["resumed_from_epoch"] == int(resumed.group(1))
    assert version["metrics"]["val_accuracy"] > 0.85
    print(
        f"\nkilled after epoch {killed_at}; resumed from the checkpoint of epoch "
        f"{resumed.group(1)} ({killed_at - int(resumed.group(1))} finished epochs redone); "
        f"running again {running_again:.1f} s after the kill (lease {FAST['lease_seconds']} s, "
        "including a new worker's start)"
    )


def test_sigterm_hands_the_job_back_and_the_next_worker_resumes(pg_redis, start_worker, service):
    client, svc = service(pg_redis)
    first = start_worker(pg_redis)
    job_id = submit(client, SLOW_JOB)
    wait_epoch(client, job_id, 3)
    first.process.send_signal(signal.SIGTERM)  # what `docker stop` sends to the main process
    first.process.wait(timeout=30)
    assert "released at epoch" in first.output(), first.output()[-3000:]
    assert job_of(client, job_id)["status"] == "queued"

    second = start_worker(pg_redis)
    job = wait_finished(client, job_id)
    assert job["status"] == "succeeded" and job["attempt"] == 2
    assert "resumed from checkpoint" in second.output()
    assert epochs_of(client, job_id) == list(range(1, 26))


def test_two_workers_and_redelivered_messages_train_once(pg_redis, start_worker, service):
    client, svc = service(pg_redis)
    workers = [start_worker(pg_redis), start_worker(pg_redis)]
    job_id = submit(client, {"epochs": 15, "batch_size": 8, "early_stopping_patience": None})
    wait_epoch(client, job_id, 1)
    for _ in range(3):  # the broker delivers again, as Redis does after visibility_timeout
        svc.publisher.publish(job_id)
    job = wait_finished(client, job_id)
    assert job["status"] == "succeeded" and job["attempt"] == 1
    wait_until(
        lambda: "".join(w.output() for w in workers).count("message dropped") == 3,
        30,
        "the three duplicate messages to be dropped",
    )
    assert epochs_of(client, job_id) == list(range(1, 16))


def test_broker_down_at_submit_then_back(
    postgres_url, private_redis, queue_name, start_worker, service
):
    settings = make_settings(postgres_url, private_redis.url, queue_name)
    client, svc = service(settings)
    private_redis.stop()
    assert client.get("/readyz").status_code == 503
    job_id = submit(client, {"epochs": 3})
    with _db(settings) as db, db.transaction() as session:
        assert session.get(Job, job_id).published_at is None
    private_redis.start()
    assert client.get("/readyz").status_code == 200
    start_worker(settings)
    sweep_until(svc, lambda: job_of(client, job_id)["status"] != "queued", "the job to start")
    assert wait_finished(client, job_id)["status"] == "succeeded"


def test_postgres_restart_during_training(pg_redis, start_worker, service):
    client, svc = service(pg_redis)
    worker = start_worker(pg_redis)
    job_id = submit(client, SLOW_JOB)
    wait_epoch(client, job_id, 3)
    cluster = os.listdir("/etc/postgresql")[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"], check=True
    )
    job = wait_finished(client, job_id)
    assert job["status"] == "succeeded", worker.output()[-3000:]
    assert job["attempt"] == 1  # rode out the outage, no second attempt
    assert epochs_of(client, job_id) == list(range(1, 26))


def test_redis_restart_during_training(
    postgres_url, private_redis, queue_name, start_worker, service
):
    settings = make_settings(postgres_url, private_redis.url, queue_name)
    client, svc = service(settings)
    worker = start_worker(settings)
    job_id = submit(client, SLOW_JOB)
    wait_epoch(client, job_id, 3)
    private_redis.stop()
    private_redis.start()
    job = wait_finished(client, job_id)
    assert job["status"] == "succeeded", worker.output()[-3000:]
    assert job["attempt"] == 1
    # The API and the worker are usable again after the restart.
    second = submit(client, {"epochs": 2})
    sweep_until(svc, lambda: job_of(client, second)["status"] != "queued", "the next job")
    assert wait_finished(client, second)["status"] == "succeeded"


def test_fifty_jobs_on_two_workers(pg_redis, start_worker, service):
    client, svc = service(pg_redis)
    start_worker(pg_redis)
    start_worker(pg_redis)
    dataset = client.post("/v1/datasets", data=mixed_csv(100), content_type="text/csv")
    ids = [
        client.post(
            "/v1/jobs",
            json={
                "dataset_id": dataset.get_json()["id"],
                "target": "species",
                "model_name": "burst",
                "hyperparameters": {
                    "epochs": 3,
                    "hidden_layers": [8],
                    "early_stopping_patience": None,
                },
            },
        ).get_json()["id"]
        for _ in range(50)
    ]
    for job_id in ids:
        assert wait_finished(client, job_id, timeout=300)["status"] == "succeeded"
    versions = client.get("/v1/models/burst").get_json()["versions"]
    assert sorted(v["version"] for v in versions) == list(range(1, 51))
    assert len({v["job_id"] for v in versions}) == 50
    with _db(pg_redis) as db, db.transaction() as session:
        rows = session.execute(
            select(
                EpochMetric.job_id, func.count(), func.count(func.distinct(EpochMetric.epoch))
            ).group_by(EpochMetric.job_id)
        ).all()
    assert len(rows) == 50 and all(count == distinct == 3 for _, count, distinct in rows)


def test_cancel_a_running_job_on_a_real_worker(pg_redis, start_worker, service):
    client, svc = service(pg_redis)
    start_worker(pg_redis)
    job_id = submit(client, SLOW_JOB)
    wait_epoch(client, job_id, 2)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    job = wait_finished(client, job_id, timeout=30)
    assert job["status"] == "cancelled" and job["model"] is None
    assert 2 <= len(epochs_of(client, job_id)) < 25
    assert client.get("/v1/models/m").status_code == 404
    # The worker is free again.
    second = submit(client, {"epochs": 2}, model_name="after")
    assert wait_finished(client, second)["status"] == "succeeded"


class _db:
    """A short-lived Database for direct checks."""

    def __init__(self, settings):
        self.database = Database.of(settings)

    def __enter__(self):
        return self.database

    def __exit__(self, *exc):
        self.database.close()
