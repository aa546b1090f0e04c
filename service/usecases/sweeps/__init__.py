"""Hyperparameter sweeps: many trials of one training set-up, the best one promoted.

A sweep stores every trial's hyperparameters at submit (each checked like a job's);
its trials are ordinary jobs (``Job.sweep_id``, ``Job.trial``), created lazily so that
at most ``max_parallel`` are queued or running at once. When the sweep ends with a
winner and ``promote_to`` is set, the winner's model version gets that alias in the same
transaction. Cut at its seams:

- ``submit``: :class:`SweepRequest` expanded into trials, checked and stored (:func:`submit_sweep`);
- ``state``: the state machine (:func:`advance`, :func:`after_trial`, :func:`advance_all`,
  :func:`cancel_sweep`);
- ``leaderboard``: the trials ranked by the sweep's metric (:class:`SweepReport`);
- ``early_stop``: :func:`stop_hopeless_trials`, the stop rule a trial's run is given.
"""

from service.usecases.sweeps.early_stop import stop_hopeless_trials, trial_stop_reason
from service.usecases.sweeps.leaderboard import (
    SweepReport,
    TrialRow,
    get_sweep,
    leaderboard,
    list_sweeps,
)
from service.usecases.sweeps.state import advance, advance_all, after_trial, cancel_sweep
from service.usecases.sweeps.submit import METRICS, SweepRequest, submit_sweep

__all__ = [
    "METRICS",
    "SweepReport",
    "SweepRequest",
    "TrialRow",
    "advance",
    "advance_all",
    "after_trial",
    "cancel_sweep",
    "get_sweep",
    "leaderboard",
    "list_sweeps",
    "stop_hopeless_trials",
    "submit_sweep",
    "trial_stop_reason",
]
