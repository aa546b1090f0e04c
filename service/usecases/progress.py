"""A job's progress as events (for the Server-Sent Events stream) and as a plot.

The stream is read by polling the database: every poll is one short transaction that
reads the job and the epoch rows the client has not seen, so no session or connection
is held between polls and nothing but the database is needed. What a client has seen is
a ``Cursor`` (the last epoch and the last status it was sent); it travels as the SSE
event id, so a reconnecting client's ``Last-Event-ID`` resumes exactly after it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from service.db.models import FINISHED_STATUSES, JOB_STATUSES, EpochMetric, Job, JobStatus
from service.db.session import Database
from service.usecases.errors import InvalidRequest, NotFound
from service.usecases.jobs import find_job

log = logging.getLogger(__name__)

_CURSOR = re.compile(r"^(\d{1,9})(?::([a-z]{1,16}))?$")


@dataclass(frozen=True)
class Cursor:
    """What a client has been sent: epochs up to ``epoch``, and ``status`` (None: nothing).

    As text (the SSE id): ``"7"`` after epoch 7's event, ``"7:running"`` after a status
    event sent once epoch 7 had been sent.
    """

    epoch: int = 0
    status: str | None = None

    @classmethod
    def parse(cls, text: str | None, field: str = "Last-Event-ID") -> Cursor:
        """The cursor of an event id; an empty or absent one is the start."""
        if not text:
            return cls()
        match = _CURSOR.match(text.strip())
        if match is None or (match.group(2) and match.group(2) not in JOB_STATUSES):
            raise InvalidRequest(
                "must be an event id this stream sent: an epoch number, optionally "
                "followed by ':' and a status (e.g. 7 or 7:running)",
                field,
            )
        epoch, status = int(match.group(1)), match.group(2)
        # An epoch event is only ever sent once the job has run.
        return cls(epoch, status or (JobStatus.RUNNING if epoch else None))

    def __str__(self) -> str:
        return f"{self.epoch}:{self.status}" if self.status else str(self.epoch)


@dataclass(frozen=True)
class Event:
    """One SSE event: ``kind`` "epoch" (``item`` an EpochMetric) or "status" (a Job)."""

    kind: str
    id: str
    item: EpochMetric | Job


@dataclass(frozen=True)
class Poll:
    """The events one poll found, the cursor after them, and whether the job has ended."""

    events: list[Event]
    cursor: Cursor
    finished: bool


def poll(db: Database, tenant: str, job_id: str, cursor: Cursor) -> Poll:
    """What happened since ``cursor``, in the order a client should see it.

    A status change to queued or running comes before the epochs it produced; the final
    status (succeeded, failed, cancelled) comes after the last epoch. Another tenant's
    job is a ``NotFound``.
    """
    with db.transaction() as session:
        job = find_job(session, tenant, job_id)
        rows = list(
            session.scalars(
                select(EpochMetric)
                .where(EpochMetric.job_id == job_id, EpochMetric.epoch > cursor.epoch)
                .order_by(EpochMetric.epoch)
            )
        )
    finished = job.status in FINISHED_STATUSES
    changed = job.status != cursor.status
    events: list[Event] = []
    epoch = cursor.epoch
    if changed and not finished:
        events.append(Event("status", str(Cursor(epoch, job.status)), job))
    for row in rows:
        epoch = row.epoch
        events.append(Event("epoch", str(epoch), row))
    if changed and finished:
        events.append(Event("status", str(Cursor(epoch, job.status)), job))
    return Poll(events, Cursor(epoch, job.status), finished)


def follow(
    db: Database,
    tenant: str,
    job_id: str,
    first: Poll,
    *,
    poll_seconds: float = 1.0,
    heartbeat_seconds: float = 15.0,
    max_seconds: float = 300.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Event | None]:
    """The events of ``first``, then those of a poll every ``poll_seconds``, until the job
    ends; ``None`` is a heartbeat, due after ``heartbeat_seconds`` without an event.

    The stream also ends after ``max_seconds`` (the client reconnects with the last id it
    got, losing nothing) and when the database fails (idem), so a stream never holds a
    server thread forever.
    """
    yield from first.events
    current = first
    started = last_sent = clock()
    while not current.finished:
        sleep(poll_seconds)
        now = clock()
        if now - started >= max_seconds:
            return
        try:
            current = poll(db, tenant, job_id, current.cursor)
        except (DBAPIError, NotFound) as exc:
            log.warning("event stream of job %s ended early: %s", job_id, exc)
            return
        if current.events:
            yield from current.events
            last_sent = now
        elif now - last_sent >= heartbeat_seconds:
            yield None
            last_sent = now


def job_history(db: Database, tenant: str, job_id: str) -> tuple[Job, list[EpochMetric]]:
    """The tenant's job and its finished epochs, in order."""
    with db.transaction() as session:
        job = find_job(session, tenant, job_id)
        rows = list(
            session.scalars(
                select(EpochMetric).where(EpochMetric.job_id == job_id).order_by(EpochMetric.epoch)
            )
        )
    return job, rows


def job_plot(db: Database, tenant: str, job_id: str, image_format: str) -> bytes:
    """The job's loss and accuracy curves as an SVG or PNG image."""
    from service.plotting import Curves, render

    job, rows = job_history(db, tenant, job_id)
    title = f"{job.model_name} · job {job.id[:8]} · {job.status}"
    if job.model_version is not None:
        title = f"{job.model_name} v{job.model_version} · job {job.id[:8]} · {job.status}"
    curves = Curves(
        epochs=[r.epoch for r in rows],
        train_loss=[r.train_loss for r in rows],
        val_loss=[r.val_loss for r in rows],
        train_accuracy=[r.train_accuracy for r in rows],
        val_accuracy=[r.val_accuracy for r in rows],
    )
    return render(curves, title, image_format, total_epochs=job.epochs)
