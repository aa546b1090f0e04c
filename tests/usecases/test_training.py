"""The training use case: claim, lease, fencing, cancel, failure; against a real SQLite file."""

from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from service.db.models import Checkpoint, EpochMetric, Job, ModelVersion, utcnow
from service.usecases import jobs, training
from service.usecases.training import AttemptLease, LeaseLost, Outcome, Stop, run_training
from service.usecases.training import run as training_run
from tests.support.training import kill_first_attempt_after, queued_job


@pytest.fixture
def job_id(db, settings, publisher):
    return queued_job(
        db, settings, publisher, rows=300, recipe="tabular", hidden_layers=[16], seed=0
    )


def job(db, job_id) -> Job:
    with db.transaction() as session:
        return session.get(Job, job_id)


def test_only_one_claim_wins_while_the_lease_is_live(db, settings, job_id):
    first = AttemptLease.claim(db, settings, job_id, "a")
    assert first is not None and first.number == 1
    assert AttemptLease.claim(db, settings, job_id, "b") is None
    assert run_training(db, settings, job_id, "b") == "dropped"
    assert job(db, job_id).worker == "a"


def test_an_expired_lease_is_claimed_by_a_new_attempt_and_fences_the_old(db, settings, job_id):
    old = AttemptLease.claim(db, settings, job_id, "a")
    with db.transaction() as session:
        session.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
    new = AttemptLease.claim(db, settings, job_id, "b")
    assert new is not None and new.number == 2
    with pytest.raises(LeaseLost), db.transaction() as session:
        old.fenced_update(session, status="succeeded")
    assert job(db, job_id).status == "running"
    assert run_training(db, settings, job_id, "c") == "dropped"


def test_attempts_are_limited(db, settings, job_id):
    for _ in range(settings.max_attempts):
        assert AttemptLease.claim(db, settings, job_id, "a") is not None
        with db.transaction() as session:
            session.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert AttemptLease.claim(db, settings, job_id, "a") is None


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
    original = training_run.record_epoch

    def cancel_after_first_epoch(lease, record, checkpoint):
        original(lease, record, checkpoint)
        if record.epoch == 1:
            jobs.cancel_job(db, "default", job_id)
            with db.transaction() as session:
                lease.cancel_requested = session.get(Job, job_id).cancel_requested

    monkeypatch.setattr(training_run, "record_epoch", cancel_after_first_epoch)
    assert run_training(db, settings, job_id, "a") == "cancelled"
    finished = job(db, job_id)
    assert finished.status == "cancelled" and finished.model_version is None
    with db.transaction() as session:
        assert session.scalars(select(EpochMetric.epoch)).all() == [1]
        assert session.scalar(select(ModelVersion)) is None
        assert session.scalar(select(Checkpoint)) is None


def test_a_failure_is_stored_as_a_readable_error(db, settings, job_id, monkeypatch):
    def explode(*args, **kwargs):
        raise ValueError("the GPU caught fire")

    monkeypatch.setattr(training.data, "prepared_data", explode)
    assert run_training(db, settings, job_id, "a") == "failed"
    failed = job(db, job_id)
    assert failed.status == "failed" and failed.finished_at is not None
    assert failed.error["type"] == "internal"
    assert "ValueError" in failed.error["message"] and "log" in failed.error["message"]
    # The traceback and the exception's text stay in the worker's log.
    assert "trace" not in failed.error and "GPU" not in failed.error["message"]


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
    second = jobs.submit_job(db, settings, publisher, "default", request).id
    assert run_training(db, settings, second, "a") == "succeeded"
    assert run_training(db, settings, job_id, "a") == "succeeded"
    assert (job(db, second).model_version, job(db, job_id).model_version) == (1, 2)


def test_a_new_attempt_resumes_after_the_last_checkpoint(db, settings, job_id, monkeypatch):
    """The first attempt dies after epoch 2 (its lease lapses); the second resumes at 3 and
    ends with exactly epochs 1..3, the same metrics as an uninterrupted run."""
    original = kill_first_attempt_after(monkeypatch, epoch=2)
    with pytest.raises(SystemExit):
        run_training(db, settings, job_id, "a")
    with db.transaction() as session:
        assert session.get(Checkpoint, job_id).epoch == 2
        session.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert run_training(db, settings, job_id, "b") == "succeeded"
    finished = job(db, job_id)
    assert finished.attempt == 2
    with db.transaction() as session:
        rows = session.scalars(select(EpochMetric).order_by(EpochMetric.epoch)).all()
        version = session.scalar(select(ModelVersion))
        assert session.scalar(select(Checkpoint)) is None
    assert [(r.epoch, r.attempt) for r in rows] == [(1, 1), (2, 1), (3, 2)]
    assert version.metrics["resumed_from_epoch"] == 2

    # The same job uninterrupted gives the same losses.
    monkeypatch.setattr(training_run, "record_epoch", original)
    with db.transaction() as session:
        session.execute(update(Job).values(status="queued", attempt=0, model_version=None))
        session.execute(delete(ModelVersion))
        session.execute(delete(EpochMetric))
    assert run_training(db, settings, job_id, "c") == "succeeded"
    with db.transaction() as session:
        again = session.scalars(select(EpochMetric).order_by(EpochMetric.epoch)).all()
    assert [r.train_loss for r in again] == [r.train_loss for r in rows]
    assert [r.val_loss for r in again] == [r.val_loss for r in rows]


def test_a_released_job_goes_back_to_the_queue_at_its_checkpoint(db, settings, job_id, monkeypatch):
    original = training_run.record_epoch

    def shutdown_during_second_epoch(lease, record, checkpoint):
        if record.epoch == 2:
            training.request_release(db, "a")
        original(lease, record, checkpoint)

    monkeypatch.setattr(training_run, "record_epoch", shutdown_during_second_epoch)
    assert run_training(db, settings, job_id, "a") == "released"
    released = job(db, job_id)
    assert released.status == "queued" and released.published_at is None
    assert released.epoch == 2 and not released.release_requested
    monkeypatch.setattr(training_run, "record_epoch", original)
    assert run_training(db, settings, job_id, "b") == "succeeded"
    with db.transaction() as session:
        assert session.scalars(select(EpochMetric.epoch)).all() == [1, 2, 3]


def test_hand_backs_do_not_use_up_attempts(db, settings, job_id, monkeypatch):
    """A job released by more stopping workers than max_attempts still trains."""
    original = training_run.record_epoch

    def shutdown_after_first_epoch(lease, record, checkpoint):
        original(lease, record, checkpoint)
        training.request_release(db, "w")

    with db.transaction() as session:  # long enough for every hand-back to come mid-run
        found = session.get(Job, job_id)
        found.hyperparameters = {
            **found.hyperparameters,
            "epochs": 30,
            "early_stopping_patience": None,
        }
        found.epochs = 30
    monkeypatch.setattr(training_run, "record_epoch", shutdown_after_first_epoch)
    for _ in range(settings.max_attempts + 1):
        assert run_training(db, settings, job_id, "w") == "released"
    monkeypatch.setattr(training_run, "record_epoch", original)
    assert run_training(db, settings, job_id, "x") == "succeeded"
    finished = job(db, job_id)
    assert finished.attempt == settings.max_attempts + 2
    assert finished.releases == settings.max_attempts + 1


def test_cancelling_a_released_job_deletes_its_checkpoint(db, settings, job_id, monkeypatch):
    original = training_run.record_epoch

    def shutdown_after_first_epoch(lease, record, checkpoint):
        original(lease, record, checkpoint)
        training.request_release(db, "w")

    monkeypatch.setattr(training_run, "record_epoch", shutdown_after_first_epoch)
    assert run_training(db, settings, job_id, "w") == "released"
    with db.transaction() as session:
        assert session.get(Checkpoint, job_id) is not None
    assert jobs.cancel_job(db, "default", job_id).status == "cancelled"
    with db.transaction() as session:
        assert session.get(Checkpoint, job_id) is None


def test_a_stop_rule_ends_training_after_its_epoch_and_keeps_the_model(db, settings, job_id):
    seen = []

    def enough_after_two(end):
        seen.append((end.record.epoch, end.last))
        return Stop(Outcome.SUCCEEDED, "two is enough") if end.record.epoch == 2 else None

    assert run_training(db, settings, job_id, "a", [enough_after_two]) == Outcome.SUCCEEDED
    assert seen == [(1, False), (2, False)]
    finished = job(db, job_id)
    assert finished.epoch == 2 and finished.stopped_early
    assert finished.stop_reason == "two is enough"
    with db.transaction() as session:
        assert session.scalar(select(ModelVersion)).metrics["epochs_run"] == 2


def test_the_lease_rule_comes_before_the_injected_ones(db, settings, job_id, monkeypatch):
    original = training_run.record_epoch

    def cancel_in_first_epoch(lease, record, checkpoint):
        jobs.cancel_job(db, "default", job_id)
        original(lease, record, checkpoint)  # its renewal reads the cancel flag

    monkeypatch.setattr(training_run, "record_epoch", cancel_in_first_epoch)
    asked = []
    assert run_training(db, settings, job_id, "a", [asked.append]) == Outcome.CANCELLED
    assert asked == []


def test_a_write_is_retried_through_a_dropped_connection(db, settings, job_id, monkeypatch):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    lease = AttemptLease.claim(db, settings, job_id, "a")
    lost = sqlite3.OperationalError("database is locked")
    failures = [OperationalError("UPDATE jobs", {}, lost)]

    def step(session):
        if failures:
            raise failures.pop()
        lease.renew(session, notes=["renewed"])
        return "written"

    monkeypatch.setattr("time.sleep", lambda _s: None)
    assert lease.write(step) == "written" and not failures
    assert job(db, job_id).notes == ["renewed"]


def test_an_error_in_a_statement_is_not_retried(db, settings, job_id):
    from sqlalchemy.exc import IntegrityError

    lease = AttemptLease.claim(db, settings, job_id, "a")
    calls = []

    def step(_session):
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(IntegrityError):
        lease.write(step)
    assert calls == [1]
