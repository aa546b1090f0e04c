"""Failover on a seen death, and the worker registry, against the database."""

from datetime import timedelta

import pytest

from service.db.models import Job, Worker, utcnow
from service.usecases import workers
from service.usecases.training import AttemptLease
from tests.support.training import queued_job


@pytest.fixture
def job_id(db, settings, publisher):
    return queued_job(db, settings, publisher, rows=300, recipe="tabular", seed=0)


def test_a_dead_workers_job_is_released_at_once_and_claimed_by_the_next(
    db, settings, publisher, job_id
):
    assert AttemptLease.claim(db, settings, job_id, "trainserve-7@a/70").number == 1
    assert (
        AttemptLease.claim(db, settings, job_id, "trainserve-8@b/80") is None
    )  # the lease is live
    publisher.published.clear()

    released = workers.fail_over(db, publisher, "trainserve-7@a/70", "test")
    assert released == [job_id] and publisher.published == [job_id]
    second = AttemptLease.claim(db, settings, job_id, "trainserve-8@b/80")
    assert second is not None and second.number == 2


def test_release_is_fenced_by_the_attempt_and_matches_whole_names(db, settings, job_id, publisher):
    AttemptLease.claim(db, settings, job_id, "trainserve-7@a/70")
    # Other processes, other nodes, a name that merely starts alike: untouched.
    for other in ("trainserve-7@a/71", "trainserve-7@b/", "trainserve-7@a/7", "trainserve-77@a/"):
        assert workers.expire_leases_of(db, other) == []
    # The node's prefix covers its pool processes.
    assert workers.expire_leases_of(db, "trainserve-7@a/") == [job_id]
    assert AttemptLease.claim(db, settings, job_id, "trainserve-8@b/80").number == 2
    # The first worker's name no longer holds the job: a late report of its death is a no-op.
    assert workers.fail_over(db, publisher, "trainserve-7@a/70", "late") == []
    with db.transaction() as session:
        job = session.get(Job, job_id)
        assert job.attempt == 2 and job.lease_until > utcnow()


def test_registry_heartbeat_and_staleness(db, settings):
    workers.register(db, "trainserve-1@g", "cuda:0", [settings.gpu_queue])
    workers.heartbeat(db, "trainserve-2@g", "cuda:0", [settings.gpu_queue])  # re-registers
    with db.transaction() as session:
        assert set(workers.gpu_workers(session, settings)) == {"trainserve-1@g", "trainserve-2@g"}
        session.get(Worker, "trainserve-1@g").seen_at = utcnow() - timedelta(
            seconds=settings.lease_seconds + 1
        )
    workers.unregister(db, "trainserve-2@g")
    with db.transaction() as session:
        assert workers.gpu_workers(session, settings) == []


def test_a_worker_starting_under_a_dead_workers_name_fails_its_jobs_over(db, settings, job_id):
    # A container restarted by Kubernetes: same pod name, the worker is process 1 again,
    # so its Celery name is the dead one's. Its worker_init hook releases those jobs.
    from workers import celery_app

    app = celery_app.create_celery(settings, database=db)
    sent = []
    app.send_task = lambda name, **kwargs: sent.append(kwargs["task_id"])
    assert AttemptLease.claim(db, settings, job_id, "trainserve-1@pod-a/17").number == 1

    class Controller:
        hostname = "trainserve-1@pod-a"

    celery_app._preload(sender=Controller())
    assert sent == [job_id]
    assert AttemptLease.claim(db, settings, job_id, "trainserve-1@pod-a/23").number == 2
