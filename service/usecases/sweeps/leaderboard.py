"""A sweep's trials ranked by its metric, and the sweep read with them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import FINISHED_STATUSES, JOB_STATUSES, EpochMetric, Job, Sweep
from service.db.session import Database
from service.usecases.errors import NotFound
from service.usecases.stopping import Curve, best_so_far


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


def get_sweep(db: Database, tenant: str, sweep_id: str) -> SweepReport:
    with db.transaction() as session:
        sweep = find_sweep(session, tenant, sweep_id)
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


def leaderboard(session: Session, sweep: Sweep) -> list[TrialRow]:
    """Every trial, the best first by the sweep's metric; trials without a value yet
    (and pending ones) after them, by trial number."""
    jobs = {job.trial: job for job in session.scalars(select(Job).where(Job.sweep_id == sweep.id))}
    curves = trial_curves(session, sweep)
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


def trial_curves(session: Session, sweep: Sweep, up_to: int | None = None) -> dict[str, Curve]:
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


def find_sweep(session: Session, tenant: str, sweep_id: str, *, lock: bool = False) -> Sweep:
    sweep = session.get(Sweep, sweep_id, with_for_update=lock)
    if sweep is None or sweep.tenant != tenant:
        raise NotFound(f"no sweep with id {sweep_id!r}")
    return sweep
