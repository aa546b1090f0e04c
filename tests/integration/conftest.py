"""Real processes: `trainserve worker` children on a queue of the test's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queue_name():
    """A queue of this test's own, so parallel or leftover messages never mix."""
    return f"training-test-{uuid.uuid4().hex[:8]}"


class Worker:
    """A `trainserve worker` child process with its log in a file."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--concurrency", "1"],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.output():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"worker did not start:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture
def start_worker(tmp_path):
    workers: list[Worker] = []

    def start(settings) -> Worker:
        env = {
            **os.environ,
            "TRAINSERVE_DATABASE_URL": settings.database_url,
            "TRAINSERVE_BROKER_URL": settings.broker_url,
            "TRAINSERVE_QUEUE": settings.queue,
            "TRAINSERVE_TORCH_THREADS": "1",
        }
        worker = Worker(env, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()
