"""Submit and publish training jobs.

A job is committed before it is published; if publishing fails the job stays
queued with ``published_at`` empty and the upkeep loop publishes it (see ``upkeep``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.config import Settings
from service.db.models import ACTIVE_STATUSES, Job, utcnow
from service.db.session import Database
from service.usecases.datasets import TableUpload, staged_dataset
from service.usecases.errors import TooManyJobs
from service.usecases.jobs.plan import JobRequest, plan_job

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """Delivers a job id to the workers (with ``gpu``, to the GPU workers' queue);
    raises if the broker cannot take it."""

    def publish(self, job_id: str, *, gpu: bool = False) -> None: ...


def submit_job(
    db: Database,
    settings: Settings,
    publisher: Publisher,
    tenant: str,
    request: JobRequest | Callable[[], JobRequest],
    *,
    idempotency_key: str | None = None,
    upload: TableUpload | None = None,
) -> Job:
    """Check the request against its dataset, store the job, then publish it.

    With ``upload`` (a CSV, Parquet or JSON Lines stream) the table is streamed into
    storage first and the dataset created in the job's transaction, so a rejected job
    leaves no dataset (and no part of it) behind; ``request`` may then be a function that
    gives it once the upload was read (a form's fields after its file). With an
    ``idempotency_key`` already used, the job that key created is returned and nothing
    new is stored.
    """
    scoped_key = f"{tenant}:{idempotency_key}" if idempotency_key else None
    if scoped_key:
        existing = _find_by_key(db, scoped_key)
        if existing is not None:
            return existing
    try:
        if upload is not None:
            with db.transaction() as session:  # refuse before reading gigabytes
                _check_active_jobs(session, settings, tenant)
            with staged_dataset(db, settings, tenant, upload) as store:
                if callable(request):
                    request = request()
                with db.transaction() as session:
                    _check_active_jobs(session, settings, tenant)
                    dataset = store(session)
                    request = replace(request, dataset_id=dataset.id)
                    job = _new_job(session, settings, tenant, request, scoped_key)
        else:
            with db.transaction() as session:
                _check_active_jobs(session, settings, tenant)
                job = _new_job(session, settings, tenant, request, scoped_key)
    except IntegrityError:
        existing = _find_by_key(db, scoped_key) if scoped_key else None
        if existing is None:
            raise
        return existing
    publish(db, publisher, job.id)
    return job


def publish(db: Database, publisher: Publisher, job_id: str, now: datetime | None = None) -> bool:
    """Publish a queued job to the queue its device asks for and record when; ``False``
    (and a log line) if the broker failed."""
    with db.transaction() as session:
        hyperparameters = session.scalar(select(Job.hyperparameters).where(Job.id == job_id))
    try:
        if (hyperparameters or {}).get("device") == "gpu":
            publisher.publish(job_id, gpu=True)
        else:
            publisher.publish(job_id)
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves the job to the upkeep loop
        log.warning("could not publish job %s (the upkeep loop will retry): %s", job_id, exc)
        return False
    with db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(published_at=now or utcnow(), publish_count=Job.publish_count + 1)
        )
    return True


def _find_by_key(db: Database, key: str) -> Job | None:
    with db.transaction() as session:
        return session.scalar(select(Job).where(Job.idempotency_key == key))


def active_jobs(session: Session, tenant: str) -> int:
    """How many of the tenant's jobs are queued or running (the per-tenant limit counts them)."""
    return session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.tenant == tenant, Job.status.in_(ACTIVE_STATUSES))
    )


def _check_active_jobs(session: Session, settings: Settings, tenant: str) -> None:
    active = active_jobs(session, tenant)
    if active >= settings.max_active_jobs_per_tenant:
        raise TooManyJobs(
            f"{active} jobs are already queued or running, the limit per tenant is "
            f"{settings.max_active_jobs_per_tenant}; wait for some to finish"
        )


def _new_job(
    session: Session,
    settings: Settings,
    tenant: str,
    request: JobRequest,
    idempotency_key: str | None,
) -> Job:
    plan = plan_job(session, settings, tenant, request)
    config = plan.check(settings, request.hyperparameters)
    notes = None
    if config.device == "gpu":
        from service.usecases.workers import gpu_job_notes

        notes = gpu_job_notes(session, settings) or None
    return plan.add_job(session, tenant, config, idempotency_key=idempotency_key, notes=notes)
