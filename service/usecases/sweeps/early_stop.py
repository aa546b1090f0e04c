"""Early termination of trials: between epochs a running trial asks
:func:`stop_hopeless_trials`, the stop rule the worker gives each training run, whether
the sweep's rule (``service.usecases.stopping``) ends it now."""

from __future__ import annotations

from functools import partial

from service.db.models import Job, Sweep, SweepStatus
from service.db.session import Database
from service.usecases.stopping import Curve, StoppingRule, decide
from service.usecases.sweeps.leaderboard import trial_curves
from service.usecases.training import EpochEnd, Outcome, Stop


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
        curves = trial_curves(session, sweep, up_to=epoch)
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
