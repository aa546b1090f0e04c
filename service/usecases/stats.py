"""Service-wide counts for the operator's metrics: jobs by status, epoch durations.

No tenant appears in these: they are totals over the whole database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select

from service.db.models import JOB_STATUSES, EpochMetric, Job
from service.db.session import Database


@dataclass(frozen=True)
class DurationHistogram:
    """Cumulative counts: ``buckets[i]`` epochs took at most ``bounds[i]`` seconds."""

    bounds: tuple[float, ...]
    buckets: tuple[int, ...]
    count: int
    total: float


def jobs_by_status(db: Database) -> dict[str, int]:
    """Every status, with 0 for those no job has (one grouped count over the status index)."""
    with db.transaction() as session:
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    counts = dict.fromkeys(JOB_STATUSES, 0)
    counts.update({status: count for status, count in rows})
    return counts


def epoch_durations(db: Database, bounds: Sequence[float]) -> DurationHistogram:
    """How long every recorded epoch took, as one aggregate over the epoch rows."""
    columns = [
        func.coalesce(func.sum(case((EpochMetric.duration_s <= bound, 1), else_=0)), 0)
        for bound in bounds
    ]
    with db.transaction() as session:
        row = session.execute(
            select(func.count(), func.coalesce(func.sum(EpochMetric.duration_s), 0.0), *columns)
        ).one()
    count, total, *buckets = row
    return DurationHistogram(
        tuple(bounds), tuple(int(b) for b in buckets), int(count), float(total)
    )
