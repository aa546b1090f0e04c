"""Flower, run as docker-compose.yml runs it, on a worker started with --events: it lists
the worker and the training task. A private redis-server, so no other test's worker is
asked to send events."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from service.config import Settings
from service.db.migrate import upgrade
from tests.integration.conftest import free_port
from tests.integration.helpers import train_on_worker, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def flower(private_redis, tmp_path):
    port = free_port()
    log_path = tmp_path / "flower.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "--broker", private_redis.url, "flower"]
            + ["--address=127.0.0.1", f"--port={port}"],
            # Flower's JSON API wants a login unless told otherwise (the test only).
            env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield f"http://127.0.0.1:{port}", log_path
    process.terminate()
    process.wait(20)


def test_flower_shows_the_worker_and_its_training_task(
    private_redis, flower, start_worker, tmp_path, queue_name
):
    base, flower_log = flower
    database_url = f"sqlite:///{tmp_path / 'trainserve.db'}"
    upgrade(database_url)
    settings = Settings.from_env(
        {}, database_url=database_url, broker_url=private_redis.url, queue=queue_name, auth="off"
    )
    worker = start_worker(settings, args=("--events",))

    def workers():
        try:
            found = requests.get(f"{base}/api/workers?refresh=1", timeout=10).json()
        except (requests.RequestException, ValueError):
            return None
        return [name for name in found if name.startswith("trainserve-")]

    names = wait_until(workers, 60, f"Flower to list the worker ({flower_log})")
    assert len(names) == 1

    job = train_on_worker(settings, "watched", epochs=2)
    assert job["status"] == "succeeded", worker.output()[-3000:]
    job_id = job["id"]

    def task():
        tasks = requests.get(f"{base}/api/tasks", timeout=10).json()
        return tasks.get(job_id, {}).get("state") == "SUCCESS" and tasks[job_id]

    seen = wait_until(task, 30, "Flower to see the task succeed")
    assert seen["name"] == "trainserve.train_job" and seen["worker"] == names[0]
