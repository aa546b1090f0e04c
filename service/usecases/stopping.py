"""Early termination of a sweep's hopeless trials: pure decisions on metric curves.

A curve is ``{epoch: value}`` of the sweep's metric for one trial. Between two epochs
a running trial asks :func:`decide`, which compares its curve with the other trials'
and answers why it should stop, or ``None``. Two rules (docs/sweeps.md):

- ``median`` (Golovin et al., Google Vizier): after ``grace_epochs``, stop a trial
  whose best value so far is worse than the median of the other trials' best values
  up to the same epoch (trials that reached that epoch, or that already ended).
- ``asha`` (asynchronous successive halving, Li et al.): at the rungs
  ``grace_epochs × reduction_factor^k``, a trial goes on only if it is in the top
  ``1 / reduction_factor`` of the trials that reached that rung.

Both wait for ``min_trials`` other trials to compare with, so the first trials
are never stopped against too little evidence.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

RULES = ("median", "asha", "none")


@dataclass(frozen=True)
class StoppingRule:
    rule: str = "median"
    grace_epochs: int = 3
    min_trials: int = 3
    reduction_factor: int = 3

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Curve:
    """One other trial's metric per epoch, and whether it has ended."""

    values: dict[int, float]
    finished: bool = False


def best_so_far(values: dict[int, float], epoch: int, mode: str) -> float | None:
    """The best value at or before ``epoch`` (min or max), ``None`` if there is none."""
    seen = [v for e, v in values.items() if e <= epoch and v is not None]
    if not seen:
        return None
    return min(seen) if mode == "min" else max(seen)


def is_worse(value: float, than: float, mode: str) -> bool:
    return value > than if mode == "min" else value < than


def decide(
    rule: StoppingRule,
    mode: str,
    metric: str,
    epoch: int,
    mine: dict[int, float],
    others: list[Curve],
) -> str | None:
    """Why the trial with curve ``mine``, having finished ``epoch``, should stop; else None."""
    if rule.rule == "none" or epoch < rule.grace_epochs:
        return None
    own = best_so_far(mine, epoch, mode)
    if own is None:
        return None
    if rule.rule == "median":
        return _median(rule, mode, metric, epoch, own, others)
    return _asha(rule, mode, metric, epoch, own, others)


def _median(rule, mode, metric, epoch, own, others) -> str | None:
    values = [
        best_so_far(c.values, epoch, mode)
        for c in others
        if c.finished or max(c.values, default=0) >= epoch
    ]
    values = [v for v in values if v is not None]
    if len(values) < rule.min_trials:
        return None
    median = statistics.median(values)
    if not is_worse(own, median, mode):
        return None
    return (
        f"median stopping rule: best {metric} {own:.4g} by epoch {epoch} is worse than the "
        f"median {median:.4g} of {len(values)} other trials by that epoch"
    )


def _asha(rule, mode, metric, epoch, own, others) -> str | None:
    rung = rule.grace_epochs
    while rung < epoch:
        rung *= rule.reduction_factor
    if rung != epoch:
        return None
    values = [
        best_so_far(c.values, epoch, mode) for c in others if max(c.values, default=0) >= epoch
    ]
    values = [v for v in values if v is not None]
    if len(values) < rule.min_trials:
        return None
    keep = max(1, (len(values) + 1) // rule.reduction_factor)
    better = sum(1 for v in values if is_worse(own, v, mode))
    if better < keep:
        return None
    return (
        f"successive halving: best {metric} {own:.4g} at rung epoch {epoch} is not in the top "
        f"{keep} of the {len(values) + 1} trials that reached it"
    )
