"""The lease of one attempt: claim, renewal, fencing, and the retry of every write.

The job row is the source of truth. A worker claims the job with one conditional
UPDATE that also increments ``attempt``; every later write of this attempt carries
``WHERE attempt = <mine> AND status = 'running'`` (:meth:`AttemptLease.fenced_update`),
so a worker whose lease expired and whose job was taken over can never overwrite the
newer attempt (the attempt is a fencing token): it gets :class:`LeaseLost` instead.

Every write goes through :meth:`AttemptLease.write`: one transaction, retried through
lost or refused connections for ``db_retry_seconds`` with backoff (:func:`retrying`).

Which jobs can be claimed is :func:`claimable`; a running job's attempt counts as gone
when :func:`lapsed` holds (its lease has expired): the claim and the upkeep loop's
requeue both ask it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service.config import Settings
from service.db.models import Checkpoint, EpochMetric, Job, JobStatus, utcnow
from service.db.session import Database
from service.storage import DISCARDED, backend_for, remove_discarded
from service.usecases import checkpoints

log = logging.getLogger("service.usecases.training")
T = TypeVar("T")


class LeaseLost(Exception):
    """This attempt no longer owns the job (another attempt took it over)."""


def lapsed(now: datetime) -> ColumnElement[bool]:
    """The running jobs whose attempt is gone: its lease expired before ``now``."""
    return and_(Job.status == JobStatus.RUNNING, Job.lease_until < now)


def claimable(settings: Settings, now: datetime) -> ColumnElement[bool]:
    """The jobs a new attempt may take: queued, or :func:`lapsed`, with attempts left
    (hand-backs, counted in ``releases``, use up none)."""
    return and_(
        Job.attempt - Job.releases < settings.max_attempts,
        or_(Job.status == JobStatus.QUEUED, lapsed(now)),
    )


@dataclass
class AttemptLease:
    """One claimed attempt of a job, and every write it makes.

    ``cancel_requested`` and ``release_requested`` are the job's flags as of the last
    renewal (:meth:`renew`).
    """

    db: Database
    settings: Settings
    job_id: str
    number: int
    sweep_id: str | None = None
    resume_epoch: int = 0
    cancel_requested: bool = False
    release_requested: bool = False
    _last_renewal: float = field(default_factory=time.monotonic, repr=False)

    @classmethod
    def claim(
        cls, db: Database, settings: Settings, job_id: str, worker: str
    ) -> AttemptLease | None:
        """Atomically take the job if it is :func:`claimable`; ``None`` if not.

        Epoch rows written after the latest checkpoint (by an attempt that died before
        its next checkpoint) are removed, so the new attempt rewrites them.
        """
        now = utcnow()
        with db.transaction() as session:
            row = session.execute(
                update(Job)
                .where(Job.id == job_id, claimable(settings, now))
                .values(
                    status=JobStatus.RUNNING,
                    attempt=Job.attempt + 1,
                    lease_until=now + timedelta(seconds=settings.lease_seconds),
                    worker=worker,
                    release_requested=False,
                    started_at=func.coalesce(Job.started_at, now),
                )
                .returning(Job.attempt, Job.cancel_requested, Job.sweep_id)
            ).first()
            if row is None:
                log.info(
                    "job %s: not claimable (finished, missing or leased); message dropped", job_id
                )
                return None
            resume = _rewind_to_checkpoint(session, job_id)
        return cls(
            db,
            settings,
            job_id,
            row.attempt,
            sweep_id=row.sweep_id,
            resume_epoch=resume,
            cancel_requested=row.cancel_requested,
        )

    # -- writes -------------------------------------------------------------------------

    def write(self, step: Callable[[Session], T]) -> T:
        """Run ``step`` in one transaction, retried through database outages."""

        def once() -> T:
            with self.db.transaction() as session:
                discarded = session.info.setdefault(DISCARDED, [])
                result = step(session)
            # Committed: the blobs the transaction stopped pointing to can go.
            remove_discarded(self.db, backend_for(self.db), discarded)
            return result

        return self.retry(once)

    def retry(self, call: Callable[[], T]) -> T:
        """``call`` (which opens its own transactions), retried through database outages."""
        return retrying(self.settings, call)

    def fenced_update(self, session: Session, **values: Any) -> Any:
        """Update the job only if this attempt still runs it; returns its cancel and release
        flags, or raises LeaseLost."""
        row = session.execute(
            update(Job)
            .where(
                Job.id == self.job_id, Job.attempt == self.number, Job.status == JobStatus.RUNNING
            )
            .values(**values)
            .returning(Job.cancel_requested, Job.release_requested)
        ).first()
        if row is None:
            raise LeaseLost(self.job_id)
        return row

    def renew(self, session: Session, **values: Any) -> None:
        """Extend the lease (fenced, with ``values`` for the job), and read the cancel and
        release flags; LeaseLost if the job is no longer this attempt's."""
        lease_until = utcnow() + timedelta(seconds=self.settings.lease_seconds)
        row = self.fenced_update(session, lease_until=lease_until, **values)
        self.cancel_requested = row.cancel_requested
        self.release_requested = row.release_requested
        self._last_renewal = time.monotonic()

    def heartbeat(self) -> bool:
        """Between batches: renews the lease when a third of it (at most 5 s) has passed;
        true once the job is to stop (cancelled, or handed back)."""
        # TRAINSERVE_HEARTBEAT_SECONDS, at most a third of the lease (two renewals may fail).
        every = max(0.1, min(self.settings.heartbeat_seconds, self.settings.lease_seconds / 3))
        if time.monotonic() - self._last_renewal >= every:
            self.write(self.renew)
        return self.cancel_requested or self.release_requested

    def end(self, session: Session, **values: Any) -> None:
        """The attempt's last write: the job's final ``values`` (fenced), the lease given
        up and the checkpoint deleted (its parts once the transaction commits)."""
        self.fenced_update(session, finished_at=utcnow(), lease_until=None, **values)
        checkpoints.drop(session, self.job_id)

    def finish(self, status: JobStatus, error: dict | None = None) -> JobStatus:
        """End the job ``status`` (failed or cancelled) with ``error``."""
        self.write(lambda session: self.end(session, status=status, error=error))
        log.info("job %s: attempt %d ended %s", self.job_id, self.number, status)
        return status

    def release(self) -> None:
        """Hand the job back to the queue; the next attempt resumes from its checkpoint."""
        self.write(
            lambda session: self.fenced_update(
                session,
                status=JobStatus.QUEUED,
                lease_until=None,
                release_requested=False,
                worker=None,
                published_at=None,
                releases=Job.releases + 1,
            )
        )
        log.info(
            "job %s: attempt %d released at epoch %d (worker shutting down)",
            self.job_id,
            self.number,
            self.resume_epoch,
        )


def _rewind_to_checkpoint(session: Session, job_id: str) -> int:
    """Delete the epoch rows after the job's checkpoint; returns the checkpoint's epoch."""
    resume = session.scalar(select(Checkpoint.epoch).where(Checkpoint.job_id == job_id)) or 0
    session.execute(
        delete(EpochMetric).where(EpochMetric.job_id == job_id, EpochMetric.epoch > resume)
    )
    latest = session.scalar(
        select(EpochMetric).where(EpochMetric.job_id == job_id, EpochMetric.epoch == resume)
    )
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(epoch=resume, latest=metrics_of(latest) if latest else None)
    )
    return resume


def request_release(db: Database, worker_prefix: str) -> int:
    """Ask every job running under workers named ``worker_prefix…`` to hand itself back."""
    with db.transaction() as session:
        result = session.execute(
            update(Job)
            .where(
                Job.status == JobStatus.RUNNING,
                Job.worker.startswith(worker_prefix, autoescape=True),
            )
            .values(release_requested=True)
        )
        return result.rowcount


def retrying(settings: Settings, write: Callable[[], T]) -> T:
    """Run ``write``, retrying through lost connections for up to ``db_retry_seconds``."""
    deadline = time.monotonic() + settings.db_retry_seconds
    delay = 0.2
    while True:
        try:
            return write()
        except DBAPIError as exc:
            if not is_outage(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning(
                "database unavailable (%s); retrying in %.1f s", type(exc.orig).__name__, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def is_outage(exc: BaseException) -> bool:
    """A lost or refused connection, as opposed to an error in the statement."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    # Connection refused or lost, server shutting down, SQLite busy: all transient.
    return type(exc.orig).__name__ in ("OperationalError", "InterfaceError")


def metrics_of(row: EpochMetric) -> dict:
    """An epoch row as the job's ``latest`` and the API show it."""
    return {
        "epoch": row.epoch,
        "train_loss": row.train_loss,
        "train_accuracy": row.train_accuracy,
        "val_loss": row.val_loss,
        "val_accuracy": row.val_accuracy,
        "learning_rate": row.learning_rate,
        "duration_s": row.duration_s,
        "samples_per_s": row.samples_per_s,
    }
