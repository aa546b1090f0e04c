"""A real HTTP server for client tests: the app under werkzeug in a thread, and a
publisher that trains each job in another thread, as a worker process would."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
from flask import Flask
from werkzeug.serving import make_server

from service.app import create_app
from service.usecases.training import run_training


class ThreadWorker:
    """Trains every published job in a thread of this process (after ``delay`` s)."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.app: Flask | None = None
        self.threads: list[threading.Thread] = []

    def publish(self, job_id: str, *, gpu: bool = False) -> None:
        thread = threading.Thread(target=self._train, args=(job_id,))
        self.threads.append(thread)
        thread.start()

    def ping(self) -> None:
        pass

    def _train(self, job_id: str) -> None:
        time.sleep(self.delay)
        svc = self.app.extensions["trainserve"]
        run_training(svc.database, svc.settings, job_id, "thread-worker")

    def join(self) -> None:
        for thread in self.threads:
            thread.join(120)


@dataclass
class Live:
    url: str
    app: Flask
    worker: ThreadWorker


@pytest.fixture
def serve():
    """``serve(settings, worker=None)`` → a ``Live`` server; all are stopped afterwards."""
    started = []

    def start(settings, worker: ThreadWorker | None = None) -> Live:
        worker = worker or ThreadWorker()
        app = create_app(settings, publisher=worker)
        worker.app = app
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread, app, worker))
        return Live(f"http://127.0.0.1:{server.server_port}", app, worker)

    yield start
    for server, thread, app, worker in started:
        server.shutdown()
        thread.join()
        worker.join()
        app.extensions["trainserve"].close()


@pytest.fixture
def live(serve, settings, monkeypatch) -> Live:
    """The app on a real port, training jobs in threads; streams poll every 0.1 s."""
    from service.api.progress import resources

    monkeypatch.setattr(resources, "POLL_SECONDS", 0.1)
    return serve(settings)
