"""Shared fixtures: settings on a migrated SQLite file, the app, a client, a fake publisher.

PostgreSQL and Redis fixtures live in tests/support/services.py and fail, never skip, when the
services are down.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from service.config import Settings
from service.db.migrate import upgrade
from service.db.session import Database

pytest_plugins = ["tests.support.services", "tests.support.live_server", "tests.support.storage"]


class RecordingPublisher:
    """A publisher that remembers what it was asked to send (and can be made to fail)."""

    def __init__(self):
        self.published: list[str] = []
        self.gpu: list[str] = []  # the jobs sent to the GPU workers' queue
        self.down = False

    def publish(self, job_id: str, *, gpu: bool = False) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.published.append(job_id)
        if gpu:
            self.gpu.append(job_id)

    def ping(self) -> None:
        if self.down:
            raise ConnectionError("broker down")


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def database_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'trainserve.db'}"
    upgrade(url)
    return url


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    return Settings.from_env(
        {},
        database_url=database_url,
        broker_url="memory://",
        auth="off",
        cache_dir=str(tmp_path / "cache"),
    )


@pytest.fixture
def db(settings):
    database = Database.of(settings)
    yield database
    database.close()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def app(settings, publisher):
    from service.app import create_app

    app = create_app(settings, publisher=publisher)
    app.config["TESTING"] = True
    yield app
    app.extensions["trainserve"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def secured(settings, publisher):
    """The app with API keys required."""
    from service.app import create_app

    app = create_app(dataclasses.replace(settings, auth="required"), publisher=publisher)
    yield app
    app.extensions["trainserve"].close()


@pytest.fixture
def tenants(secured) -> dict[str, dict[str, str]]:
    """The Authorization headers of a key of tenant acme and one of tenant globex."""
    from service.usecases import keys

    db = secured.extensions["trainserve"].database
    return {
        name: {"Authorization": f"Bearer {keys.create_key(db, name)[1]}"}
        for name in ("acme", "globex")
    }
