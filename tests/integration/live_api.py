"""A live ``trainserve api`` (gunicorn, its default worker class) on a SQLite file that
already holds a trained model and API keys: what the real-client and fuzz tests call."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from service.app import create_app
from service.config import Settings
from service.db.migrate import upgrade
from service.usecases import keys
from tests.conftest import RecordingPublisher
from tests.integration.helpers import trainserve_child
from tests.support.data import mixed_csv
from tests.support.training import train_model

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LiveApi:
    url: str
    port: int
    database_url: str
    keys: dict[str, str]  # scope set name → the plain key
    log: Path

    def headers(self, who: str = "all") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


def prepare(home: Path, **limits) -> tuple[str, dict[str, str]]:
    """A migrated SQLite database with model ``iris`` (version 1, alias ``production``)
    and keys: ``all`` scopes, ``predict`` only, ``train`` only, ``read`` only."""
    url = f"sqlite:///{home / 'trainserve.db'}"
    upgrade(url)
    settings = Settings.from_env({}, database_url=url, broker_url="memory://", auth="required")
    app = create_app(dataclasses.replace(settings, **limits), publisher=RecordingPublisher())
    db = app.extensions["trainserve"].database
    made = {"all": keys.create_key(db, "acme")[1]}
    for scope in ("predict", "train", "read"):
        made[scope] = keys.create_key(db, "acme", scope, frozenset({scope}))[1]
    headers = {"Authorization": f"Bearer {made['all']}"}
    train_model(app, csv=mixed_csv(150), hyperparameters={"epochs": 3, "seed": 0}, headers=headers)
    client = app.test_client()
    assert client.put("/v1/models/iris/aliases/production", json={"version": 1}, headers=headers)
    app.extensions["trainserve"].close()
    return url, made


@contextlib.contextmanager
def running_api(
    home: Path, database_url: str, args: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Iterator[tuple[int, Path]]:
    """``trainserve api`` on a free port; stopped (SIGTERM) afterwards."""
    from tests.integration.conftest import free_port

    port = free_port()
    log_path = home / f"api-{port}.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRAINSERVE_")}
    environ.update(
        TRAINSERVE_DATABASE_URL=database_url,
        TRAINSERVE_BROKER_URL="memory://",
        TRAINSERVE_AUTH="required",
        **(env or {}),
    )
    with trainserve_child(
        ["api", "--port", str(port), *args],
        environ,
        log_path,
        lambda: _alive(port),
        stop_signal=signal.SIGTERM,
        own_session=True,
    ):
        yield port, log_path


def _alive(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False
