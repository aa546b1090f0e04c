"""Advancing a sweep from several processes at once: no trial created twice or skipped,
on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, update

from service.api.jobs.schemas import HyperparametersSchema, load_hyperparameters
from service.config import Settings
from service.db.migrate import upgrade
from service.db.models import Job, Sweep, utcnow
from service.db.session import Database
from service.usecases import sweeps
from tests.conftest import RecordingPublisher
from tests.support.training import stored_dataset


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    db = Database(url)
    yield db, Settings.from_env({}, database_url=url, broker_url="memory://", auth="off")
    db.close()


def test_concurrent_advances_create_each_trial_once(database):
    db, settings = database
    publisher = RecordingPublisher()
    dataset = stored_dataset(db, settings, 60)
    request = sweeps.SweepRequest(
        dataset_id=dataset.id,
        target="species",
        model_name="m",
        hyperparameters=HyperparametersSchema().load({"epochs": 2}),
        search={"grid": {"seed": list(range(9))}},
        max_parallel=3,
    )
    report = sweeps.submit_sweep(db, settings, publisher, "default", request, load_hyperparameters)
    sweep_id = report.id
    for expected in (6, 9, 9):
        # Every active trial ends at once; eight "workers" advance the sweep together.
        with db.transaction() as session:
            session.execute(
                update(Job)
                .where(Job.sweep_id == sweep_id, Job.status == "queued")
                .values(status="failed", finished_at=utcnow(), error={"message": "x"})
            )
        barrier = threading.Barrier(8)
        threads = [
            threading.Thread(
                target=advance_after, args=(barrier, db, settings, publisher, sweep_id)
            )
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with db.transaction() as session:
            trials = list(session.scalars(select(Job.trial).where(Job.sweep_id == sweep_id)))
        assert sorted(trials) == list(range(expected))
    # The last trials ended: the sweep ended failed, once, with every trial's reason.
    report = sweeps.get_sweep(db, "default", sweep_id)
    assert report.status == "failed" and report.created_trials == 9
    assert [t["trial"] for t in report.error["trials"]] == list(range(9))
    assert len(publisher.published) == len(set(publisher.published)) == 9
    assert sweeps.advance(db, settings, publisher, sweep_id) == []
    with db.transaction() as session:
        assert session.get(Sweep, sweep_id).status == "failed"


def advance_after(barrier, db, settings, publisher, sweep_id):
    barrier.wait()
    sweeps.advance(db, settings, publisher, sweep_id)
