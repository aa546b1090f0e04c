"""Read, list and cancel a tenant's jobs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import FINISHED_STATUSES, EpochMetric, Job, JobStatus, utcnow
from service.db.session import Database
from service.storage import DISCARDED, backend_for, remove_discarded
from service.usecases import checkpoints
from service.usecases.errors import Conflict, NotFound


def get_job(db: Database, tenant: str, job_id: str) -> Job:
    with db.transaction() as session:
        return find_job(session, tenant, job_id)


def find_job(session: Session, tenant: str, job_id: str) -> Job:
    """The tenant's job; another tenant's is as absent as a missing one."""
    job = session.get(Job, job_id)
    if job is None or job.tenant != tenant:
        raise NotFound(f"no job with id {job_id!r}")
    return job


def list_jobs(
    db: Database,
    tenant: str,
    *,
    status: str | None = None,
    model_name: str | None = None,
    dataset_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Job]:
    """The tenant's jobs, newest first, optionally filtered."""
    query = select(Job).where(Job.tenant == tenant).order_by(Job.created_at.desc(), Job.id)
    if status:
        query = query.where(Job.status == status)
    if model_name:
        query = query.where(Job.model_name == model_name)
    if dataset_id:
        query = query.where(Job.dataset_id == dataset_id)
    with db.transaction() as session:
        return list(session.scalars(query.limit(limit).offset(offset)))


def job_metrics(db: Database, tenant: str, job_id: str) -> list[EpochMetric]:
    """Every finished epoch of the job, in order; readable while it runs."""
    with db.transaction() as session:
        find_job(session, tenant, job_id)
        query = select(EpochMetric).where(EpochMetric.job_id == job_id).order_by(EpochMetric.epoch)
        return list(session.scalars(query))


def cancel_job(db: Database, tenant: str, job_id: str) -> Job:
    """Cancel a queued job at once, or ask a running one to stop within seconds."""
    with db.transaction() as session:
        discarded = session.info.setdefault(DISCARDED, [])
        job = find_job(session, tenant, job_id)
        if job.status in FINISHED_STATUSES:
            raise Conflict(f"job {job_id!r} has already finished ({job.status})")
        request_cancel(session, job)
    remove_discarded(db, backend_for(db), discarded)
    return job


def request_cancel(session: Session, job: Job) -> None:
    """Cancel an unfinished job in ``session``: a queued one at once, a running one by flag."""
    if job.status == JobStatus.QUEUED:
        job.status = JobStatus.CANCELLED
        job.finished_at = utcnow()
        # A job handed back by a stopping worker may have a checkpoint (its parts go
        # after the commit, or at the next upkeep pass).
        checkpoints.drop(session, job.id)
    job.cancel_requested = True
