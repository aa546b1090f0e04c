"""The upkeep loop: republish what the broker lost, requeue what a dead worker held."""

from datetime import timedelta

import pytest
from sqlalchemy import update

from service.db.models import Job, utcnow
from service.usecases.training import AttemptLease
from service.usecases.upkeep import upkeep_pass
from tests.support.training import queued_job


@pytest.fixture
def job_id(db, settings, publisher):
    return queued_job(db, settings, publisher, rows=50, epochs=2)


def get(db, job_id) -> Job:
    with db.transaction() as session:
        return session.get(Job, job_id)


def test_a_job_the_broker_never_took_is_published_on_the_next_pass(db, settings, publisher):
    publisher.down = True
    job_id = queued_job(db, settings, publisher, rows=50, epochs=100)
    assert publisher.published == []
    assert upkeep_pass(db, settings, publisher).published == []  # still down: nothing, no error
    publisher.down = False
    assert upkeep_pass(db, settings, publisher).published == [job_id]
    assert publisher.published == [job_id]
    assert get(db, job_id).published_at is not None


def test_an_unclaimed_job_is_republished_with_backoff(db, settings, publisher, job_id):
    assert upkeep_pass(db, settings, publisher).published == []  # just published
    later = utcnow() + timedelta(seconds=settings.republish_after_seconds + 1)
    assert upkeep_pass(db, settings, publisher, now=later).published == [job_id]
    # The second republish waits twice as long.
    soon = later + timedelta(seconds=settings.republish_after_seconds + 1)
    assert upkeep_pass(db, settings, publisher, now=soon).published == []
    much_later = later + timedelta(seconds=2 * settings.republish_after_seconds + 1)
    assert upkeep_pass(db, settings, publisher, now=much_later).published == [job_id]


def test_an_expired_lease_is_requeued_and_published(db, settings, publisher, job_id):
    AttemptLease.claim(db, settings, job_id, "dead-worker")
    assert upkeep_pass(db, settings, publisher).requeued == []  # lease live
    later = utcnow() + timedelta(seconds=settings.lease_seconds + 1)
    report = upkeep_pass(db, settings, publisher, now=later)
    assert report.requeued == [job_id] and report.published == [job_id]
    requeued = get(db, job_id)
    assert requeued.status == "queued" and requeued.attempt == 1
    assert AttemptLease.claim(db, settings, job_id, "new-worker").number == 2


def test_a_job_past_its_attempts_fails_with_a_reason(db, settings, publisher, job_id):
    with db.transaction() as session:
        session.execute(update(Job).values(attempt=settings.max_attempts - 1))
    AttemptLease.claim(db, settings, job_id, "dead-worker")
    later = utcnow() + timedelta(seconds=settings.lease_seconds + 1)
    assert upkeep_pass(db, settings, publisher, now=later).failed == [job_id]
    failed = get(db, job_id)
    assert failed.status == "failed" and failed.error["type"] == "worker_lost"
