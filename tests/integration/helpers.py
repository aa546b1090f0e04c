"""Polling helpers for tests that watch real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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


def slow_job(epochs: int, width: int, seed: int) -> dict:
    """Hyperparameters of exactly ``epochs`` epochs of the plain recipe (no early stopping),
    slow enough to be cut mid-way: batches of 8, two hidden layers of ``width``."""
    return {
        "recipe": "plain",
        "epochs": epochs,
        "early_stopping_patience": None,
        "batch_size": 8,
        "hidden_layers": [width, width],
        "seed": seed,
    }


def submit(client, hyperparameters: dict, rows: int = 600, model_name: str = "m") -> str:
    """Upload ``mixed_csv(rows)`` through ``client`` and submit a job on it; its id."""
    from tests.support.data import mixed_csv

    dataset = client.post("/v1/datasets", data=mixed_csv(rows), content_type="text/csv")
    response = client.post(
        "/v1/jobs",
        json={
            "dataset_id": dataset.get_json()["id"],
            "target": "species",
            "model_name": model_name,
            "hyperparameters": hyperparameters,
        },
    )
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def train_on_worker(settings, model_name: str, epochs: int) -> dict:
    """Upload 100 rows of ``mixed_csv`` through an app of ``settings``, submit a job, and
    wait for a real worker on the same broker to finish it; the finished job."""
    from service.app import create_app

    app = create_app(settings)
    try:
        client = app.test_client()
        job_id = submit(client, {"recipe": "plain", "epochs": epochs}, 100, model_name)
        return wait_finished(client, job_id)
    finally:
        app.extensions["trainserve"].close()


@contextlib.contextmanager
def trainserve_child(
    args: list[str],
    env: dict[str, str],
    log_path: Path,
    ready: Callable[[], bool],
    *,
    stop_signal: int,
    own_session: bool = False,
) -> Iterator[subprocess.Popen]:
    """``trainserve ARGS`` in a child process (output in ``log_path``), yielded once
    ``ready()`` (90 s at most; an AssertionError with the log's tail otherwise); at the end
    sent ``stop_signal`` and killed (with ``own_session``, its whole session) if it has not
    exited 40 s later."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            env=env,
            cwd=Path(__file__).resolve().parents[2],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )
    try:
        deadline = time.monotonic() + 90
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text()[-3000:]
                raise AssertionError(f"trainserve {args[0]} did not start:\n{output}")
            time.sleep(0.3)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(stop_signal)
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                if own_session:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
                process.wait()
