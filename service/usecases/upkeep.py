"""The upkeep loop, which makes any broker safe: the database is the source of truth.

One pass (:func:`upkeep_pass`; ``trainserve upkeep`` runs one every
``TRAINSERVE_SWEEP_INTERVAL_SECONDS``):

1. a running job whose lease expired lost its worker: it goes back to ``queued``
   (or ends ``failed`` once it has used ``max_attempts``);
2. every running hyperparameter sweep creates its next trials, or ends, if a trial
   ended without the worker advancing it (see ``sweeps.advance``);
3. a queued job that was never published, or whose last publish is older than
   ``republish_after_seconds`` × 2^(publishes − 1) (capped at 10 minutes), is
   published again. A duplicate message is harmless: the claim drops it.

Several upkeep loops may run at once; every change is a conditional UPDATE.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update

from service.config import Settings
from service.db.models import Job, JobStatus, utcnow
from service.db.session import Database
from service.storage import backend_for, remove_abandoned
from service.usecases import checkpoints
from service.usecases.jobs import Publisher, publish
from service.usecases.sweeps import advance_all
from service.usecases.training.lease import lapsed

log = logging.getLogger(__name__)

MAX_REPUBLISH_DELAY_S = 600.0


@dataclass
class UpkeepReport:
    """The job ids one pass changed."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    trials_created: list[str] = field(default_factory=list)
    uploads_removed: int = 0


def upkeep_pass(
    db: Database, settings: Settings, publisher: Publisher, now: datetime | None = None
) -> UpkeepReport:
    """One pass of upkeep; safe to run concurrently with workers and other upkeep loops."""
    now = now or utcnow()
    report = UpkeepReport()
    _recover_expired(db, settings, now, report)
    report.trials_created = advance_all(db, settings, publisher)
    _republish(db, settings, publisher, now, report)
    # Parts of uploads whose process died (an aborted upload removes its own at once),
    # and of blobs discarded (replaced or ended checkpoints) that nobody removed yet.
    report.uploads_removed = remove_abandoned(db, backend_for(db))
    return report


def _recover_expired(db: Database, settings: Settings, now: datetime, report: UpkeepReport):
    with db.transaction() as session:
        expired = session.execute(
            select(Job.id, Job.attempt, Job.releases).where(lapsed(now))
        ).all()
    for job_id, attempt, releases in expired:
        lost = attempt - releases  # attempts that ended without handing the job back
        exhausted = lost >= settings.max_attempts
        values = (
            {
                "status": JobStatus.FAILED,
                "finished_at": now,
                "error": {
                    "type": "worker_lost",
                    "message": f"the worker running the job was lost {lost} time(s); "
                    f"giving up after {settings.max_attempts} attempts",
                },
            }
            if exhausted
            else {"status": JobStatus.QUEUED, "published_at": None}
        )
        with db.transaction() as session:
            changed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.attempt == attempt, lapsed(now))
                .values(lease_until=None, **values)
                .returning(Job.id)
            ).first()
            if changed is not None and exhausted:
                checkpoints.drop(session, job_id)  # its parts: remove_abandoned, below
        if changed is None:
            continue
        if exhausted:
            log.warning("job %s: lease expired after attempt %d; failed", job_id, attempt)
            report.failed.append(job_id)
        else:
            log.warning("job %s: lease of attempt %d expired; requeued", job_id, attempt)
            report.requeued.append(job_id)


def _republish(
    db: Database, settings: Settings, publisher: Publisher, now: datetime, report: UpkeepReport
):
    with db.transaction() as session:
        queued = list(
            session.scalars(
                select(Job).where(Job.status == JobStatus.QUEUED).order_by(Job.created_at)
            )
        )
    for job in queued:
        if job.published_at is not None:
            delay = min(
                settings.republish_after_seconds * 2 ** max(job.publish_count - 1, 0),
                MAX_REPUBLISH_DELAY_S,
            )
            if job.published_at > now - timedelta(seconds=delay):
                continue
        if not publish(db, publisher, job.id, now):
            return  # the broker is down: try again on the next pass
        log.info("job %s: published again (it was never claimed)", job.id)
        report.published.append(job.id)
