"""A sweep's state machine: :func:`advance` creates its next trials (at most
``max_parallel`` active, within the tenant's active-job limit) or ends it, choosing the
winner and promoting it; it locks the sweep's row, so concurrent calls neither create a
trial twice nor miss one. The worker calls it after each trial, the upkeep loop on every
pass."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.config import Settings
from service.db.models import ACTIVE_STATUSES, Job, JobStatus, Sweep, SweepStatus, utcnow
from service.db.session import Database
from service.usecases.aliases import set_alias_in
from service.usecases.errors import Conflict, UseCaseError
from service.usecases.jobs import (
    JobRequest,
    Publisher,
    active_jobs,
    plan_job,
    publish,
    request_cancel,
)
from service.usecases.sweeps.leaderboard import SweepReport, find_sweep, leaderboard

if TYPE_CHECKING:
    from service.usecases.sweeps.submit import SweepRequest

log = logging.getLogger(__name__)


def advance(db: Database, settings: Settings, publisher: Publisher, sweep_id: str) -> list[str]:
    """Create the sweep's next trials (up to ``max_parallel`` active), or end the sweep
    when no trial is left; idempotent. Returns the ids of the trials created."""
    with db.transaction() as session:
        sweep = session.get(Sweep, sweep_id, with_for_update=True)
        if sweep is None or sweep.status != SweepStatus.RUNNING:
            return []
        created = advance_in(session, settings, sweep)
    publish_trials(db, publisher, created)
    return created


def after_trial(db: Database, settings: Settings, publisher: Publisher, job_id: str) -> None:
    """Advance the sweep of ``job_id``, if it is a trial (the worker calls this after
    every job it ran)."""
    with db.transaction() as session:
        sweep_id = session.scalar(select(Job.sweep_id).where(Job.id == job_id))
    if sweep_id is not None:
        advance(db, settings, publisher, sweep_id)


def advance_all(db: Database, settings: Settings, publisher: Publisher) -> list[str]:
    """Advance every running sweep (the upkeep loop's safety net)."""
    with db.transaction() as session:
        running = list(session.scalars(select(Sweep.id).where(Sweep.status == SweepStatus.RUNNING)))
    created: list[str] = []
    for sweep_id in running:
        try:
            created += advance(db, settings, publisher, sweep_id)
        except Exception:  # noqa: BLE001 - one sweep's trouble must not stop the others
            log.exception("sweep %s: could not advance", sweep_id)
    return created


def cancel_sweep(db: Database, settings: Settings, tenant: str, sweep_id: str) -> SweepReport:
    """Create no more trials and cancel every unfinished one (running ones stop within
    seconds); the sweep ends ``cancelled`` once none is running."""
    with db.transaction() as session:
        sweep = find_sweep(session, tenant, sweep_id, lock=True)
        if sweep.status != SweepStatus.RUNNING:
            raise Conflict(f"sweep {sweep_id!r} has already finished ({sweep.status})")
        sweep.cancel_requested = True
        for job in session.scalars(
            select(Job).where(Job.sweep_id == sweep.id, Job.status.in_(ACTIVE_STATUSES))
        ):
            request_cancel(session, job)
        session.flush()
        advance_in(session, settings, sweep)
        return SweepReport(sweep, leaderboard(session, sweep))


def advance_in(session: Session, settings: Settings, sweep: Sweep) -> list[str]:
    counts = dict(
        session.execute(
            select(Job.status, func.count()).where(Job.sweep_id == sweep.id).group_by(Job.status)
        ).all()
    )
    active = sum(counts.get(status, 0) for status in ACTIVE_STATUSES)
    left = len(sweep.trials) - sweep.created_trials
    created: list[str] = []
    if not sweep.cancel_requested and left and active < sweep.max_parallel:
        room = settings.max_active_jobs_per_tenant - active_jobs(session, sweep.tenant)
        wanted = min(sweep.max_parallel - active, left, room)
        if wanted > 0:
            try:
                created = _create_trials(session, settings, sweep, wanted)
            except UseCaseError as exc:
                # The set-up no longer holds (the dataset was deleted between trials).
                sweep.cancel_requested = True
                sweep.error = {"type": "trial_not_created", "message": exc.message}
                log.warning("sweep %s: trial not created: %s", sweep.id, exc.message)
    if active == 0 and not created and (sweep.cancel_requested or not left):
        _finish(session, sweep)
    return created


def _create_trials(session: Session, settings: Settings, sweep: Sweep, count: int) -> list[str]:
    plan = plan_job(session, settings, sweep.tenant, job_request(sweep))
    created = []
    for _ in range(count):
        trial = sweep.created_trials
        config = plan.check(settings, {**sweep.hyperparameters, **sweep.trials[trial]})
        job = plan.add_job(session, sweep.tenant, config, sweep_id=sweep.id, trial=trial)
        sweep.created_trials = trial + 1
        created.append(job.id)
        log.info("sweep %s: trial %d created as job %s", sweep.id, trial, job.id)
    return created


def _finish(session: Session, sweep: Sweep) -> None:
    rows = leaderboard(session, sweep)
    winner = next(
        (r for r in rows if r.status == JobStatus.SUCCEEDED and r.model_version is not None), None
    )
    sweep.finished_at = utcnow()
    if sweep.error is not None:
        sweep.status = SweepStatus.FAILED
    elif sweep.cancel_requested:
        sweep.status = SweepStatus.CANCELLED
    elif winner is None:
        sweep.status = SweepStatus.FAILED
        sweep.error = {
            "type": "all_trials_failed",
            "message": f"none of the {len(rows)} trials produced a model",
            "trials": [
                {"trial": r.trial, "job_id": r.job_id, "status": r.status, "error": r.error}
                for r in sorted(rows, key=lambda r: r.trial)
            ],
        }
    else:
        sweep.status = SweepStatus.SUCCEEDED
        sweep.winner_job_id, sweep.winner_version = winner.job_id, winner.model_version
        if sweep.promote_to:
            set_alias_in(
                session, sweep.tenant, sweep.model_name, sweep.promote_to, winner.model_version
            )
    log.info("sweep %s: %s", sweep.id, sweep.status)


def job_request(source: SweepRequest | Sweep) -> JobRequest:
    return JobRequest(
        target=source.target,
        model_name=source.model_name,
        hyperparameters={},
        dataset_id=source.dataset_id,
        features=source.features,
        column_types=source.column_types,
    )


def publish_trials(db: Database, publisher: Publisher, job_ids: list[str]) -> None:
    for job_id in job_ids:
        publish(db, publisher, job_id)
