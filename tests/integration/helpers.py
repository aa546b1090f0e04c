"""Polling helpers for tests that watch real processes."""

from __future__ import annotations

import time
from collections.abc import Callable

FINISHED = ("succeeded", "failed", "cancelled")


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def job_of(client, job_id: str) -> dict:
    return client.get(f"/v1/jobs/{job_id}").get_json()


def wait_finished(client, job_id: str, timeout: float = 120) -> dict:
    return wait_until(
        lambda: (job := job_of(client, job_id))["status"] in FINISHED and job,
        timeout,
        f"job {job_id} to finish",
    )


def wait_epoch(client, job_id: str, epoch: int, timeout: float = 60) -> dict:
    return wait_until(
        lambda: (job := job_of(client, job_id))["epoch"] >= epoch and job,
        timeout,
        f"job {job_id} to reach epoch {epoch}",
    )


def train_on_worker(settings, model_name: str, epochs: int) -> dict:
    """Upload 100 rows of ``mixed_csv`` through an app of ``settings``, submit a job, and
    wait for a real worker on the same broker to finish it; the finished job."""
    from service.app import create_app
    from tests.support.data import mixed_csv

    app = create_app(settings)
    try:
        client = app.test_client()
        dataset = client.post("/v1/datasets", data=mixed_csv(100), content_type="text/csv")
        job_id = client.post(
            "/v1/jobs",
            json={
                "dataset_id": dataset.get_json()["id"],
                "target": "species",
                "model_name": model_name,
                "hyperparameters": {"recipe": "plain", "epochs": epochs},
            },
        ).get_json()["id"]
        return wait_finished(client, job_id)
    finally:
        app.extensions["trainserve"].close()
