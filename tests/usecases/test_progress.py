"""The progress stream read from the database: order of events, cursors, heartbeats, the
maximum duration; driven by a fake clock whose sleeps let a "worker" write rows."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from service.db.models import EpochMetric, Job
from service.usecases import progress
from service.usecases.errors import InvalidRequest, NotFound
from tests.support.training import queued_job


@pytest.fixture
def job_id(db, settings, publisher):
    return queued_job(db, settings, publisher)


def set_status(db, job_id, status):
    with db.transaction() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status=status))


def add_epoch(db, job_id, epoch):
    with db.transaction() as session:
        session.add(
            EpochMetric(
                job_id=job_id,
                epoch=epoch,
                attempt=1,
                train_loss=1.0 / epoch,
                val_loss=1.1 / epoch,
                val_accuracy=0.5,
                learning_rate=0.01,
                duration_s=0.1,
            )
        )
        session.execute(update(Job).where(Job.id == job_id).values(epoch=epoch))


class FakeTime:
    """A clock that advances by each sleep, running the step planned for that sleep."""

    def __init__(self, steps):
        self.now = 0.0
        self.steps = list(steps)

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        if self.steps:
            self.steps.pop(0)()


def labels(events):
    return [None if e is None else (e.kind, e.id) for e in events]


def test_cursor_round_trips_and_rejects_what_the_stream_never_sends():
    assert progress.Cursor.parse(None) == progress.Cursor(0, None)
    assert progress.Cursor.parse("7") == progress.Cursor(7, "running")
    assert progress.Cursor.parse("7:succeeded") == progress.Cursor(7, "succeeded")
    assert str(progress.Cursor(3, "queued")) == "3:queued" and str(progress.Cursor(4)) == "4"
    for bad in ("x", "-1", "3:done", "3:", "1e3"):
        with pytest.raises(InvalidRequest) as caught:
            progress.Cursor.parse(bad)
        assert caught.value.field == "Last-Event-ID"


def test_a_job_is_followed_from_queued_to_its_final_status(db, job_id):
    def worker_starts():
        set_status(db, job_id, "running")
        add_epoch(db, job_id, 1)

    steps = [
        lambda: None,  # a poll that finds nothing new
        worker_starts,
        lambda: (add_epoch(db, job_id, 2), add_epoch(db, job_id, 3)),
        lambda: set_status(db, job_id, "succeeded"),
    ]
    fake = FakeTime(steps)
    first = progress.poll(db, "default", job_id, progress.Cursor())
    events = list(
        progress.follow(
            db, "default", job_id, first, poll_seconds=1, clock=fake.clock, sleep=fake.sleep
        )
    )
    assert labels(events) == [
        ("status", "0:queued"),
        ("status", "0:running"),  # a new status comes before the epochs it produced
        ("epoch", "1"),
        ("epoch", "2"),
        ("epoch", "3"),
        ("status", "3:succeeded"),  # the final one after the last epoch
    ]
    assert events[2].item.train_loss == 1.0 and events[-1].item.status == "succeeded"


def test_resuming_sends_only_what_came_after_the_cursor(db, job_id):
    set_status(db, job_id, "running")
    for epoch in (1, 2, 3):
        add_epoch(db, job_id, epoch)
    set_status(db, job_id, "succeeded")
    resumed = progress.poll(db, "default", job_id, progress.Cursor.parse("2"))
    assert labels(resumed.events) == [("epoch", "3"), ("status", "3:succeeded")]
    done = progress.poll(db, "default", job_id, progress.Cursor.parse("3:succeeded"))
    assert done.events == [] and done.finished


def test_heartbeats_while_nothing_happens_and_the_stream_ends_at_its_maximum(db, job_id):
    fake = FakeTime([])
    first = progress.poll(db, "default", job_id, progress.Cursor())
    events = list(
        progress.follow(
            db,
            "default",
            job_id,
            first,
            poll_seconds=1,
            heartbeat_seconds=3,
            max_seconds=10,
            clock=fake.clock,
            sleep=fake.sleep,
        )
    )
    assert labels(events) == [("status", "0:queued"), None, None, None]
    assert fake.now == 10


def test_another_tenants_job_is_not_found(db, job_id):
    with pytest.raises(NotFound):
        progress.poll(db, "acme", job_id, progress.Cursor())
    with pytest.raises(NotFound):
        progress.job_plot(db, "acme", job_id, "svg")
