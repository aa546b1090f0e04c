"""Real processes: `trainserve worker` children on a queue of the test's own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from service.app import create_app
from service.config import PREFIX
from tests.integration.helpers import trainserve_child
from tests.support.processes import stop_group

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queue_name():
    """A queue of this test's own, so parallel or leftover messages never mix."""
    return f"training-test-{uuid.uuid4().hex[:8]}"


def settings_env(settings) -> dict[str, str]:
    """The TRAINSERVE_* variables that give a child process exactly these settings."""
    return {
        PREFIX + field.name.upper(): str(getattr(settings, field.name))
        for field in fields(settings)
    }


class Worker:
    """A `trainserve worker` child process with its log in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, args: tuple[str, ...] = ()):
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--concurrency", "1", *args],
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

    def kill(self) -> None:
        """SIGKILL the worker and its pool children, as a machine dying would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        stop_group(self.process)
        self.log.close()


@pytest.fixture
def start_worker(tmp_path):
    workers: list[Worker] = []

    def start(settings, wait: bool = True, args: tuple[str, ...] = ()) -> Worker:
        env = {**os.environ, **settings_env(settings), "TRAINSERVE_TORCH_THREADS": "1"}
        worker = Worker(env, tmp_path / f"worker-{len(workers)}.log", args)
        workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


class RedisServer:
    """A private redis-server on a free port, which a test may stop and start."""

    def __init__(self, port: int, log_path: Path):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.log_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.5).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def private_redis(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = RedisServer(port, tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_service(
    home: Path, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[int, subprocess.Popen]]:
    """`trainserve up` on a free port with its home in ``home``, stopped with Ctrl-C after."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRAINSERVE_")}
    # Ctrl-C: `up` stops its API and worker (they run in sessions of their own).
    with trainserve_child(
        ["up", "--home", str(home), "--port", str(port)],
        {**environ, **(env or {})},
        log_path,
        lambda: _ready(port),
        stop_signal=signal.SIGINT,
    ) as process:
        yield port, process


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture
def service(tmp_path):
    """`trainserve up` on a free port with its home in tmp_path: (port, process, log path)."""
    log_path = tmp_path / "up.log"
    with running_service(tmp_path / "home", log_path) as (port, process):
        yield port, process, log_path


@pytest.fixture
def api_service():
    """An app (real Celery publisher) and its client for given settings; closed afterwards."""
    apps = []

    def make(settings):
        app = create_app(settings)
        apps.append(app)
        return app.test_client(), app.extensions["trainserve"]

    yield make
    for app in apps:
        app.extensions["trainserve"].close()
