"""The training use case: claim, lease, fencing, cancel, failure; against a real SQLite file."""

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from service.db.models import EpochMetric, Job, ModelVersion, utcnow
from service.usecases import datasets, jobs
from service.usecases.training import LeaseLost, _fenced_update, claim, run_training
from tests.data import mixed_csv


@pytest.fixture
def job_id(db, settings, publisher):
    dataset = datasets.upload_dataset(db, settings, name="d", csv=mixed_csv())
    request = jobs.JobRequest(
        target="species",
        model_name="m",
        hyperparameters={"epochs": 3, "hidden_layers": [16], "seed": 0, **_defaults()},
        dataset_id=dataset.id,
    )
    return jobs.submit_job(db, settings, publisher, request).id


def _defaults():
    from service.api.jobs.schemas import HyperparametersSchema

    loaded = HyperparametersSchema().load({})
    del loaded["epochs"], loaded["hidden_layers"], loaded["seed"]
    return loaded


def job(db, job_id) -> Job:
    with db.transaction() as session:
        return session.get(Job, job_id)


def test_only_one_claim_wins_while_the_lease_is_live(db, settings, job_id):
    first = claim(db, settings, job_id, "a")
    assert first is not None and first.number == 1
    assert claim(db, settings, job_id, "b") is None
    assert run_training(db, settings, job_id, "b") == "dropped"
    assert job(db, job_id).worker == "a"


def test_an_expired_lease_is_claimed_by_a_new_attempt_and_fences_the_old(db, settings, job_id):
    old = claim(db, settings, job_id, "a")
    with db.transaction() as session:
        session.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
    new = claim(db, settings, job_id, "b")
    assert new is not None and new.number == 2
    with pytest.raises(LeaseLost), db.transaction() as session:
        _fenced_update(session, old, status="succeeded")
    assert job(db, job_id).status == "running"
    assert run_training(db, settings, job_id, "c") == "dropped"


def test_attempts_are_limited(db, settings, job_id):
    for _ in range(settings.max_attempts):
        assert claim(db, settings, job_id, "a") is not None
        with db.transaction() as session:
            session.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert claim(db, settings, job_id, "a") is None


def test_a_finished_job_is_never_trained_again(db, settings, job_id):
    assert run_training(db, settings, job_id, "a") == "succeeded"
    assert run_training(db, settings, job_id, "a") == "dropped"
    with db.transaction() as session:
        assert session.scalar(select(ModelVersion.version)) == 1
        epochs = session.scalars(select(EpochMetric.epoch).order_by(EpochMetric.epoch)).all()
    assert epochs == [1, 2, 3]


def test_cancel_while_running_stops_keeps_metrics_and_makes_no_model(
    db, settings, job_id, monkeypatch
):
    from service.usecases import training

    original = training._record_epoch

    def cancel_after_first_epoch(db_, settings_, attempt, record):
        original(db_, settings_, attempt, record)
        if record.epoch == 1:
            jobs.cancel_job(db, job_id)
            with db.transaction() as session:
                attempt.cancel_requested = session.get(Job, job_id).cancel_requested

    monkeypatch.setattr(training, "_record_epoch", cancel_after_first_epoch)
    assert run_training(db, settings, job_id, "a") == "cancelled"
    finished = job(db, job_id)
    assert finished.status == "cancelled" and finished.model_version is None
    with db.transaction() as session:
        assert session.scalars(select(EpochMetric.epoch)).all() == [1]
        assert session.scalar(select(ModelVersion)) is None


def test_a_failure_is_stored_as_a_readable_error(db, settings, job_id, monkeypatch):
    from service.usecases import training

    def explode(*args, **kwargs):
        raise ValueError("the GPU caught fire")

    monkeypatch.setattr(training, "prepare", explode)
    assert run_training(db, settings, job_id, "a") == "failed"
    failed = job(db, job_id)
    assert failed.status == "failed" and failed.finished_at is not None
    assert failed.error["type"] == "internal"
    assert "the GPU caught fire" in failed.error["message"]


def test_a_deleted_dataset_fails_the_job_cleanly(db, settings, job_id):
    with db.transaction() as session:
        session.execute(update(Job).values(dataset_id=None))
    assert run_training(db, settings, job_id, "a") == "failed"
    assert "deleted" in job(db, job_id).error["message"]


def test_two_jobs_of_one_model_get_consecutive_versions(db, settings, publisher, job_id):
    with db.transaction() as session:
        original = session.get(Job, job_id)
        request = jobs.JobRequest(
            target=original.target,
            model_name="m",
            hyperparameters=original.hyperparameters,
            dataset_id=original.dataset_id,
        )
    second = jobs.submit_job(db, settings, publisher, request).id
    assert run_training(db, settings, second, "a") == "succeeded"
    assert run_training(db, settings, job_id, "a") == "succeeded"
    assert (job(db, second).model_version, job(db, job_id).model_version) == (1, 2)
