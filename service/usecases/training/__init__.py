"""Training a job, cut at its seams:

- ``lease``: :class:`AttemptLease`, the claim, renewal and fencing of one attempt, and the
  retry of its writes through database outages;
- ``data``: what the attempt trains on (the dataset read and prepared, the checkpoint);
- ``run``: :func:`run_training`, the epoch driver and its stop rules;
- ``store``: the trained model stored as the next version of its name.
"""

from service.usecases.training.lease import AttemptLease, LeaseLost, request_release
from service.usecases.training.run import (
    EpochEnd,
    Outcome,
    Stop,
    StopRule,
    cancelled_or_released,
    run_training,
)

__all__ = [
    "AttemptLease",
    "EpochEnd",
    "LeaseLost",
    "Outcome",
    "Stop",
    "StopRule",
    "cancelled_or_released",
    "request_release",
    "run_training",
]
