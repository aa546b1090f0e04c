"""Hyperparameter sweeps: many trials of one training set-up, the best one promoted.

A sweep stores every trial's hyperparameters at submit (each checked like a job's);
its trials are ordinary jobs (``Job.sweep_id``, ``Job.trial``), created lazily so that
at most ``max_parallel`` are queued or running at once, within the tenant's
active-job limit. :func:`advance` creates the next trials and ends the sweep when
none is left; the worker calls it after each trial's final write and the upkeep loop on
every pass, and it locks the sweep's row, so concurrent calls neither create a trial
twice nor miss one. When the sweep ends with a winner and ``promote_to`` is set, the
winner's model version gets that alias in the same transaction.

Between epochs a running trial asks :func:`stop_hopeless_trials`, the stop rule the
worker gives each training run, whether the sweep's early-termination rule
(``service.usecases.stopping``) ends it now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.config import Settings
from service.db.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    JOB_STATUSES,
    EpochMetric,
    Job,
    JobStatus,
    Sweep,
    SweepStatus,
    utcnow,
)
from service.db.session import Database
from service.usecases.aliases import check_alias, set_alias_in
from service.usecases.errors import Conflict, InvalidRequest, NotFound, UseCaseError
from service.usecases.jobs import (
    JobRequest,
    Publisher,
    active_jobs,
    plan_job,
    publish,
    request_cancel,
)
from service.usecases.search import HyperparameterLoader, expand, source_field
from service.usecases.stopping import Curve, StoppingRule, best_so_far, decide
from service.usecases.training import EpochEnd, Outcome, Stop

log = logging.getLogger(__name__)

# The metrics a sweep can optimise (columns of every epoch row) and their natural mode.
METRICS = {"val_loss": "min", "val_accuracy": "max", "train_loss": "min", "train_accuracy": "max"}


@dataclass(frozen=True)
class SweepRequest:
    """A sweep submission whose fields have their shapes; ``hyperparameters`` (the base of
    every trial) and ``search`` are checked and expanded into trials by submit."""

    dataset_id: str
    target: str
    model_name: str
    hyperparameters: dict[str, Any]
    search: dict[str, Any]
    metric: str = "val_loss"
    mode: str | None = None
    max_parallel: int = 2
    early_stopping: StoppingRule = field(default_factory=StoppingRule)
    promote_to: str | None = None
    features: list[str] | None = None
    column_types: dict[str, str] | None = None


@dataclass(frozen=True)
class TrialRow:
    """One line of a sweep's leaderboard."""

    trial: int
    hyperparameters: dict[str, Any]
    status: str  # "pending" until its job exists, then the job's status
    job_id: str | None = None
    value: float | None = None  # the best value of the sweep's metric over its epochs
    best_epoch: int | None = None
    epoch: int = 0
    epochs: int | None = None
    stopped_early: bool = False
    stopped_at_epoch: int | None = None
    stop_reason: str | None = None
    model_version: int | None = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class SweepReport:
    """A sweep with its progress: what ``GET /v1/sweeps/{id}`` shows."""

    sweep: Sweep
    leaderboard: list[TrialRow]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sweep, name)

    @property
    def n_trials(self) -> int:
        return len(self.sweep.trials)

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("pending", *JOB_STATUSES, "stopped_early"), 0)
        for row in self.leaderboard:
            counts[row.status] += 1
            counts["stopped_early"] += row.stopped_early
        return counts

    @property
    def best(self) -> TrialRow | None:
        """The leading trial so far (it may still be running)."""
        first = self.leaderboard[0] if self.leaderboard else None
        return first if first is not None and first.value is not None else None


def submit_sweep(
    db: Database,
    settings: Settings,
    publisher: Publisher,
    tenant: str,
    request: SweepRequest,
    load_hyperparameters: HyperparameterLoader,
) -> SweepReport:
    """Expand the search into trials, check each (``load_hyperparameters``, then against
    the dataset), store the sweep and its first trials, then publish those. Nothing is
    stored if any trial is refused."""
    base, trials = expand(request.search, request.hyperparameters, load_hyperparameters)
    if request.max_parallel > settings.max_active_jobs_per_tenant:
        raise InvalidRequest(
            f"must be at most the per-tenant active-job limit "
            f"({settings.max_active_jobs_per_tenant})",
            "max_parallel",
        )
    if request.promote_to is not None:
        check_alias(request.promote_to, "promote_to")
    mode = request.mode or METRICS[request.metric]
    with db.transaction() as session:
        plan = plan_job(session, settings, tenant, _job_request(request))
        for trial, values in enumerate(trials):
            try:
                plan.check(settings, {**base, **values})
            except InvalidRequest as exc:
                raise InvalidRequest(
                    f"trial {trial}: {exc.message}",
                    source_field(request.search, exc.field, values),
                ) from None
        sweep = Sweep(
            tenant=tenant,
            dataset_id=request.dataset_id,
            target=request.target,
            features=request.features,
            column_types=request.column_types,
            model_name=request.model_name,
            hyperparameters=base,
            search=request.search,
            trials=trials,
            metric=request.metric,
            mode=mode,
            max_parallel=request.max_parallel,
            early_stopping=request.early_stopping.to_json(),
            promote_to=request.promote_to,
            status=SweepStatus.RUNNING,
            cancel_requested=False,
            created_trials=0,
        )
        session.add(sweep)
        session.flush()
        created = _advance_in(session, settings, sweep)
    _publish(db, publisher, created)
    return get_sweep(db, tenant, sweep.id)


def advance(db: Database, settings: Settings, publisher: Publisher, sweep_id: str) -> list[str]:
    """Create the sweep's next trials (up to ``max_parallel`` active), or end the sweep
    when no trial is left; idempotent. Returns the ids of the trials created."""
    with db.transaction() as session:
        sweep = session.get(Sweep, sweep_id, with_for_update=True)
        if sweep is None or sweep.status != SweepStatus.RUNNING:
            return []
        created = _advance_in(session, settings, sweep)
    _publish(db, publisher, created)
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


def get_sweep(db: Database, tenant: str, sweep_id: str) -> SweepReport:
    with db.transaction() as session:
        sweep = _find(session, tenant, sweep_id)
        return SweepReport(sweep, leaderboard(session, sweep))


def list_sweeps(
    db: Database, tenant: str, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> list[SweepReport]:
    """The tenant's sweeps, newest first."""
    query = select(Sweep).where(Sweep.tenant == tenant).order_by(Sweep.created_at.desc(), Sweep.id)
    if status:
        query = query.where(Sweep.status == status)
    with db.transaction() as session:
        sweeps = list(session.scalars(query.limit(limit).offset(offset)))
        return [SweepReport(s, leaderboard(session, s)) for s in sweeps]


def cancel_sweep(db: Database, settings: Settings, tenant: str, sweep_id: str) -> SweepReport:
    """Create no more trials and cancel every unfinished one (running ones stop within
    seconds); the sweep ends ``cancelled`` once none is running."""
    with db.transaction() as session:
        sweep = _find(session, tenant, sweep_id, lock=True)
        if sweep.status != SweepStatus.RUNNING:
            raise Conflict(f"sweep {sweep_id!r} has already finished ({sweep.status})")
        sweep.cancel_requested = True
        for job in session.scalars(
            select(Job).where(Job.sweep_id == sweep.id, Job.status.in_(ACTIVE_STATUSES))
        ):
            request_cancel(session, job)
        session.flush()
        _advance_in(session, settings, sweep)
        return SweepReport(sweep, leaderboard(session, sweep))


def trial_stop_reason(db: Database, job_id: str, epoch: int) -> str | None:
    """Why the sweep's early-termination rule ends trial ``job_id`` after ``epoch``;
    ``None``: it goes on (also for a job that is not a trial)."""
    with db.transaction() as session:
        job = session.get(Job, job_id)
        sweep = session.get(Sweep, job.sweep_id) if job and job.sweep_id else None
        if sweep is None or sweep.status != SweepStatus.RUNNING:
            return None
        rule = StoppingRule(**sweep.early_stopping)
        if rule.rule == "none" or epoch < rule.grace_epochs:
            return None
        curves = _curves(session, sweep, up_to=epoch)
    mine = curves.pop(job_id, Curve({})).values
    return decide(rule, sweep.mode, sweep.metric, epoch, mine, list(curves.values()))


def stop_hopeless_trials(end: EpochEnd) -> Stop | None:
    """The training run's stop rule for trials: ends a trial the sweep's early-termination
    rule finds hopeless, keeping the model it has (its ``stop_reason`` says why)."""
    lease = end.lease
    if lease.sweep_id is None or end.last:
        return None
    reason = lease.retry(partial(trial_stop_reason, lease.db, lease.job_id, end.record.epoch))
    return Stop(Outcome.SUCCEEDED, reason) if reason else None


def leaderboard(session: Session, sweep: Sweep) -> list[TrialRow]:
    """Every trial, the best first by the sweep's metric; trials without a value yet
    (and pending ones) after them, by trial number."""
    jobs = {job.trial: job for job in session.scalars(select(Job).where(Job.sweep_id == sweep.id))}
    curves = _curves(session, sweep)
    rows = []
    for trial, values in enumerate(sweep.trials):
        job = jobs.get(trial)
        if job is None:
            rows.append(TrialRow(trial, values, "pending"))
            continue
        curve = curves.get(job.id, Curve({})).values
        value = best_so_far(curve, max(curve, default=0), sweep.mode)
        best_epoch = min((e for e, v in curve.items() if v == value), default=None)
        rows.append(
            TrialRow(
                trial=trial,
                hyperparameters=values,
                status=job.status,
                job_id=job.id,
                value=value,
                best_epoch=best_epoch if value is not None else None,
                epoch=job.epoch,
                epochs=job.epochs,
                stopped_early=job.stopped_early,
                stopped_at_epoch=job.epoch if job.stopped_early else None,
                stop_reason=job.stop_reason,
                model_version=job.model_version,
                error=(job.error or {}).get("message"),
                started_at=job.started_at,
                finished_at=job.finished_at,
            )
        )
    sign = 1 if sweep.mode == "min" else -1
    return sorted(
        rows,
        key=lambda r: (r.value is None, sign * r.value if r.value is not None else 0, r.trial),
    )


def _advance_in(session: Session, settings: Settings, sweep: Sweep) -> list[str]:
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
    plan = plan_job(session, settings, sweep.tenant, _job_request(sweep))
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


def _curves(session: Session, sweep: Sweep, up_to: int | None = None) -> dict[str, Curve]:
    """Each trial job's metric per epoch (at most ``up_to``), and whether it has ended."""
    column = getattr(EpochMetric, sweep.metric)
    query = (
        select(Job.id, Job.status, EpochMetric.epoch, column)
        .join(EpochMetric, EpochMetric.job_id == Job.id, isouter=True)
        .where(Job.sweep_id == sweep.id)
    )
    if up_to is not None:
        query = query.where((EpochMetric.epoch <= up_to) | EpochMetric.epoch.is_(None))
    curves: dict[str, Curve] = {}
    for job_id, status, epoch, value in session.execute(query):
        curve = curves.setdefault(job_id, Curve({}, status in FINISHED_STATUSES))
        if epoch is not None and value is not None:
            curve.values[epoch] = value
    return curves


def _job_request(source: SweepRequest | Sweep) -> JobRequest:
    return JobRequest(
        target=source.target,
        model_name=source.model_name,
        hyperparameters={},
        dataset_id=source.dataset_id,
        features=source.features,
        column_types=source.column_types,
    )


def _find(session: Session, tenant: str, sweep_id: str, *, lock: bool = False) -> Sweep:
    sweep = session.get(Sweep, sweep_id, with_for_update=lock)
    if sweep is None or sweep.tenant != tenant:
        raise NotFound(f"no sweep with id {sweep_id!r}")
    return sweep


def _publish(db: Database, publisher: Publisher, job_ids: list[str]) -> None:
    for job_id in job_ids:
        publish(db, publisher, job_id)
