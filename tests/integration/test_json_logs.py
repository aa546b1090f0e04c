"""JSON logs from real processes: every line a worker writes while a job runs names the
job and the attempt, whichever logger wrote it; `trainserve up` and gunicorn log JSON too."""

from __future__ import annotations

import json
import time

import pytest
import requests

from service.config import Settings
from service.db.migrate import upgrade
from tests.integration.conftest import running_service
from tests.integration.helpers import train_on_worker

pytestmark = pytest.mark.integration


@pytest.fixture
def json_settings(tmp_path, queue_name):
    database_url = f"sqlite:///{tmp_path / 'trainserve.db'}"
    upgrade(database_url)
    return Settings.from_env(
        {},
        database_url=database_url,
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        queue=queue_name,
        auth="off",
        log_format="json",
    )


def test_every_worker_line_of_a_job_carries_its_id_and_attempt(json_settings, start_worker):
    worker = start_worker(json_settings)
    job = train_on_worker(json_settings, "logged", epochs=3)
    job_id = job["id"]
    assert job["status"] == "succeeded", worker.output()[-3000:]

    # The job's row says succeeded a moment before the worker logs it: wait for the line.
    deadline = time.monotonic() + 30
    while "succeeded as logged version 1" not in worker.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = []
    for text in worker.output().splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    assert any(line["message"].endswith(" ready.") for line in lines)  # Celery's own, as JSON
    assert all({"time", "level", "logger", "message", "process"} <= set(line) for line in lines)
    # From the claim to the stored model: the training process's lines, all of them tagged.
    start = next(i for i, line in enumerate(lines) if "attempt 1 started" in line["message"])
    end = next(
        i for i, line in enumerate(lines) if "succeeded as logged version 1" in line["message"]
    )
    during = [line for line in lines[start : end + 1] if line["process"] == lines[start]["process"]]
    assert len(during) >= 2
    for line in during:
        assert (line["job_id"], line["attempt"]) == (job_id, 1), line
    # Lines outside any job carry no job fields.
    assert all("job_id" not in line for line in lines[:start] if "ready." in line["message"])


def test_trainserve_up_logs_json_from_every_process(tmp_path):
    env = {"TRAINSERVE_LOG_FORMAT": "json"}
    log_path = tmp_path / "up.log"
    with running_service(tmp_path / "home", log_path, env) as (port, _process):
        assert requests.get(f"http://127.0.0.1:{port}/ui", timeout=10).status_code == 200
    lines = [json.loads(text) for text in log_path.read_text().splitlines() if text[:1] == "{"]
    by_logger = {}
    for line in lines:
        by_logger.setdefault(line["logger"], []).append(line["message"])
    assert any("trainserve up: home" in m for m in by_logger["trainserve"])  # up itself
    assert any("Listening at" in m for m in by_logger["gunicorn.error"])  # the API
    assert any('"GET /ui HTTP/1.1" 200' in m for m in by_logger["gunicorn.access"])
    assert any(m.endswith(" ready.") for m in by_logger["celery.apps.worker"])  # the worker
    assert len({line["process"] for line in lines}) >= 4  # up, gunicorn and 2 workers, Celery
