"""The training task, run in this process through Celery's own ``apply`` (a unit test of
the task's glue; the integration tests run it in real workers): what it does with each
outcome of the training use case."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from service.db.models import Job
from service.usecases import sweeps, training
from service.usecases.training import run as training_run
from tests.support.training import queued_job
from workers.celery_app import TRAIN_TASK, create_celery


@pytest.fixture
def celery(settings, db):
    app = create_celery(settings, database=db)
    app.loader.import_default_modules()  # registers workers.tasks
    yield app
    app.close()


def run_task(app, job_id: str) -> str:
    return app.tasks[TRAIN_TASK].apply(args=[job_id]).get()


def job(db, job_id) -> Job:
    with db.transaction() as session:
        return session.get(Job, job_id)


def test_the_task_trains_the_job_and_a_duplicate_message_is_dropped(celery, db, settings):
    job_id = queued_job(db, settings, _Publisher(), epochs=2)
    assert run_task(celery, job_id) == "succeeded"
    assert job(db, job_id).model_version == 1
    assert run_task(celery, job_id) == "dropped"


def test_a_released_job_is_published_again_at_once(celery, db, settings, monkeypatch):
    job_id = queued_job(db, settings, _Publisher(), epochs=3)
    original = training_run.record_epoch

    def stop_after_first_epoch(lease, record, checkpoint):
        original(lease, record, checkpoint)
        training.request_release(db, "")  # every worker is shutting down

    monkeypatch.setattr(training_run, "record_epoch", stop_after_first_epoch)
    before = job(db, job_id).publish_count
    assert run_task(celery, job_id) == "released"
    released = job(db, job_id)
    assert released.status == "queued"
    assert released.publish_count == before + 1 and released.published_at is not None


def test_a_finished_trial_starts_the_next_one(celery, db, settings):
    from service.api.jobs.schemas import load_hyperparameters
    from tests.support.training import stored_dataset

    dataset = stored_dataset(db, settings, 60)
    request = sweeps.SweepRequest(
        dataset_id=dataset.id,
        target="species",
        model_name="m",
        hyperparameters={"epochs": 1},
        search={"grid": {"seed": [1, 2]}},
        max_parallel=1,
    )
    publisher = _Publisher()
    sweep = sweeps.submit_sweep(db, settings, publisher, "default", request, load_hyperparameters)
    (first,) = _trials(db, sweep.id)
    assert run_task(celery, first) == "succeeded"
    assert len(_trials(db, sweep.id)) == 2


def _trials(db, sweep_id: str) -> list[str]:
    with db.transaction() as session:
        return list(session.scalars(select(Job.id).where(Job.sweep_id == sweep_id)))


def test_a_lost_lease_neither_republishes_nor_advances(celery, db, settings, monkeypatch):
    job_id = queued_job(db, settings, _Publisher(), epochs=2)
    calls = []
    monkeypatch.setattr("workers.tasks.run_training", lambda *a, **k: training.Outcome.LEASE_LOST)
    monkeypatch.setattr("workers.tasks.publish", lambda *a, **k: calls.append("publish"))
    monkeypatch.setattr("workers.tasks.after_trial", lambda *a, **k: calls.append("advance"))
    assert run_task(celery, job_id) == "lease_lost"
    assert calls == []
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


class _Publisher:
    def publish(self, job_id: str) -> None:
        pass
