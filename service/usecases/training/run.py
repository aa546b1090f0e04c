"""One attempt of a training job, end to end: claim, load, train epoch by epoch until a
stop rule or the last epoch, then store the model or end the job as the rule says.

Each epoch's metrics row, the lease renewal and (every ``checkpoint_every_epochs``)
the checkpoint are one transaction (:func:`record_epoch`), so a new attempt resumes
exactly after the last checkpointed epoch and the metrics stay one row per epoch.

What ends training early is not decided here: after every epoch the run asks its stop
rules (:data:`StopRule`), in order, the way skorch's callbacks end a fit. The lease's
own rule (:func:`cancelled_or_released`) always comes first; the worker adds the
sweeps' rule (``service.usecases.sweeps.stop_hopeless_trials``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Settings
from service.db.models import EpochMetric, JobStatus
from service.db.session import Database
from service.logs import bind_attempt
from service.ml import MLError
from service.ml.device import describe, job_device
from service.ml.evaluation import evaluate
from service.ml.inference import ModelBundle
from service.ml.network import count_parameters
from service.ml.training import EpochRecord, Trainer
from service.usecases import checkpoints
from service.usecases.training import data as training_data
from service.usecases.training.lease import AttemptLease, LeaseLost, is_outage
from service.usecases.training.store import store_model

log = logging.getLogger("service.usecases.training")


class Outcome(StrEnum):
    """What one attempt came to (the task's return value, and its log line)."""

    DROPPED = "dropped"  # not claimable: finished, cancelled, attempts used up, or leased
    RELEASED = "released"  # handed back at its last checkpoint: the worker is stopping
    LEASE_LOST = "lease_lost"  # another attempt took the job over
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Stop:
    """A stop rule's verdict: end training after this epoch, with this outcome.

    ``SUCCEEDED`` keeps the model trained so far, with ``reason`` stored as the job's
    ``stop_reason``; ``CANCELLED`` ends the job without a model; ``RELEASED`` hands it back.
    """

    outcome: Outcome
    reason: str | None = None


@dataclass(frozen=True)
class EpochEnd:
    """What a stop rule sees after each epoch. ``last``: training ends after this epoch
    anyway (its final epoch, or early stopping)."""

    lease: AttemptLease
    record: EpochRecord
    last: bool


StopRule = Callable[[EpochEnd], "Stop | None"]


def cancelled_or_released(end: EpochEnd) -> Stop | None:
    """The lease's rule: the job was cancelled, or its worker is shutting down."""
    return _flags(end.lease)


def _flags(lease: AttemptLease) -> Stop | None:
    if lease.cancel_requested:
        return Stop(Outcome.CANCELLED)
    if lease.release_requested:
        return Stop(Outcome.RELEASED)
    return None


def run_training(
    db: Database,
    settings: Settings,
    job_id: str,
    worker: str,
    stop_rules: Sequence[StopRule] = (),
    device: str = "cpu",
) -> Outcome:
    """Claim ``job_id`` and train it; returns what happened (see :class:`Outcome`).

    ``stop_rules`` are asked after every epoch, after :func:`cancelled_or_released`.
    ``device`` is the worker's (``"cpu"``, or ``"cuda:N"`` for GPU jobs); a CPU job
    trains on the CPU anywhere.
    """
    lease = AttemptLease.claim(db, settings, job_id, worker)
    if lease is None:
        return Outcome.DROPPED
    bind_attempt(lease.number)
    if lease.resume_epoch:
        log.info(
            "job %s: attempt %d on %s resumed from checkpoint at epoch %d",
            job_id,
            lease.number,
            worker,
            lease.resume_epoch,
        )
    else:
        log.info("job %s: attempt %d started on %s", job_id, lease.number, worker)
    try:
        if lease.cancel_requested:
            return Outcome(lease.finish(JobStatus.CANCELLED))
        return _run(lease, [cancelled_or_released, *stop_rules], device)
    except LeaseLost:
        log.warning("job %s: attempt %d lost its lease; stopping", job_id, lease.number)
        return Outcome.LEASE_LOST
    except MLError as exc:
        return Outcome(lease.finish(JobStatus.FAILED, {"type": "data", "message": str(exc)}))
    except Exception as exc:
        if is_outage(exc):
            # The database stayed away longer than db_retry_seconds: leave the job to
            # the upkeep loop (its lease lapses) rather than fail it for an outage.
            log.exception(
                "job %s: attempt %d gave up during a database outage", job_id, lease.number
            )
            raise
        # The traceback goes to the worker's log only: it may name files, SQL or data.
        log.exception("job %s: attempt %d crashed", job_id, lease.number)
        error = {
            "type": "internal",
            "message": f"training failed with an internal error ({type(exc).__name__}); "
            "the worker's log has the details",
        }
        return Outcome(lease.finish(JobStatus.FAILED, error))


def _run(lease: AttemptLease, stop_rules: Sequence[StopRule], worker_device: str) -> Outcome:
    data = training_data.load(lease)
    if data.config.device == "gpu" and worker_device == "cpu":
        # Only GPU workers consume the GPU queue; a GPU job that reached a CPU worker
        # anyway goes back, and the task publishes it to its own queue.
        log.warning("job %s asks for a GPU and this worker has none", lease.job_id)
        lease.release()
        return Outcome.RELEASED
    device = job_device(data.config.device, worker_device)
    trainer = data.prepared.trainer(data.config, device)
    if data.checkpoint is not None:
        trainer.restore(*data.checkpoint)
    notes = data.prepared.notes() or None
    # Loading and preparing the data may have taken a while: renew before training.
    lease.write(lambda session: lease.renew(session, notes=notes))
    started = time.perf_counter()
    stop = train(lease, trainer, stop_rules)
    if stop is not None and stop.outcome is Outcome.CANCELLED:
        return Outcome(lease.finish(JobStatus.CANCELLED))
    if stop is not None and stop.outcome is Outcome.RELEASED:
        lease.release()
        return Outcome.RELEASED
    model_epoch, state = trainer.final_state()
    prepared = data.prepared
    bundle = ModelBundle.from_state(trainer.arch, prepared.encoder, prepared.labels.classes, state)
    metrics = {
        "epoch": model_epoch,  # the epoch whose weights the model has
        "best_epoch": trainer.best_epoch,  # the epoch of the lowest validation loss
        "validation": evaluate(
            bundle.network, prepared.x_val, prepared.y_val, bundle.classes, prepared.folds
        ),
        "epochs_run": trainer.last_epoch,
        "n_parameters": count_parameters(trainer.arch),
        "train_rows": len(prepared.y_train),
        "validation_rows": len(prepared.y_val),
        "dropped_rows": prepared.dropped_rows,
        "training_time_s": time.perf_counter() - started,
        "resumed_from_epoch": lease.resume_epoch or None,
        "device": describe(device),
        "precision": data.config.precision,
        "folds": prepared.n_folds,
        "temperature": float(state["temperature"]) if "temperature" in state else None,
        # The recipe that trained it: every hyperparameter, resolved.
        "recipe": data.config.to_json(),
    }
    store_model(lease, bundle, metrics, stop.reason if stop is not None else None)
    return Outcome.SUCCEEDED


def train(lease: AttemptLease, trainer: Trainer, stop_rules: Sequence[StopRule]) -> Stop | None:
    """Drive ``trainer`` epoch by epoch, recording each; returns the first stop rule's
    verdict, or ``None`` when training ran to its end (or early stopping ended it)."""
    epochs = trainer.config.epochs
    every = lease.settings.checkpoint_every_epochs
    for record in trainer.fit(should_stop=lease.heartbeat):
        due = record.epoch % every == 0 and not record.stop and record.epoch < epochs
        record_epoch(lease, record, trainer.checkpoint() if due else None)
        end = EpochEnd(lease, record, last=record.stop or record.epoch >= epochs)
        for rule in stop_rules:
            stop = rule(end)
            if stop is not None:
                if stop.reason:
                    log.info("job %s: stopped early: %s", lease.job_id, stop.reason)
                return stop
    # A heartbeat between batches may have ended the epoch early.
    return _flags(lease)


def record_epoch(
    lease: AttemptLease, record: EpochRecord, checkpoint: tuple[bytes, dict] | None
) -> None:
    """Store the epoch's metrics row, renew the lease and save the checkpoint (if any),
    in one transaction. A row this attempt wrote before a dropped connection is kept,
    not duplicated; one another attempt wrote means this one lost the job.

    The checkpoint's tensors are written first, in parts (:func:`checkpoints.stage`);
    the transaction points the checkpoint row to them and discards the previous ones."""
    metrics = record.metrics()
    staged = checkpoints.stage(lease, *checkpoint) if checkpoint is not None else None

    def write(session: Session) -> None:
        lease.renew(session, epoch=record.epoch, latest=metrics)
        written = session.scalar(
            select(EpochMetric.attempt).where(
                EpochMetric.job_id == lease.job_id, EpochMetric.epoch == record.epoch
            )
        )
        if written is None:
            session.add(EpochMetric(job_id=lease.job_id, attempt=lease.number, **metrics))
        elif written != lease.number:
            raise LeaseLost(lease.job_id)
        if staged is not None:
            staged.commit(session, record.epoch, lease.number)

    try:
        lease.write(write)
    except BaseException:
        if staged is not None:
            staged.abort()
        raise
