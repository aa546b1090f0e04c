"""Run one attempt of a training job: claim, resume, train epoch by epoch, store the model.

The job row is the source of truth. A worker claims the job with one conditional
UPDATE that also increments ``attempt``; every later write of this attempt carries
``WHERE attempt = <mine>``, so a worker whose lease expired and whose job was taken
over can never overwrite the newer attempt (the attempt is a fencing token).

Each epoch's metrics row, the lease renewal and (every ``checkpoint_every_epochs``)
the checkpoint are one transaction, so a new attempt resumes exactly after the last
checkpointed epoch and the metrics stay one row per epoch. Writes are retried through
short database outages.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TypeVar

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from service.config import Settings
from service.db.models import Checkpoint, Dataset, EpochMetric, Job, ModelVersion, new_id, utcnow
from service.db.session import Database
from service.logs import bind_attempt
from service.ml import MLError, tabular
from service.ml.evaluation import evaluate
from service.ml.inference import ModelBundle
from service.ml.network import count_parameters
from service.ml.pipeline import prepare
from service.ml.training import EpochRecord, TrainingConfig
from service.storage import DatabaseStorage
from service.usecases.sweeps import trial_stop_reason

log = logging.getLogger(__name__)
T = TypeVar("T")


class LeaseLost(Exception):
    """This attempt no longer owns the job (another attempt took it over)."""


@dataclass
class Attempt:
    """The claimed job as this attempt sees it."""

    job_id: str
    number: int
    cancel_requested: bool = False
    release_requested: bool = False
    resume_epoch: int = 0
    sweep_id: str | None = None
    # Set when the sweep's early-termination rule ends this trial (see usecases.sweeps).
    stop_reason: str | None = None


def run_training(db: Database, settings: Settings, job_id: str, worker: str) -> str:
    """Claim ``job_id`` and train it; returns what happened, for the log.

    ``"dropped"``: not claimable (finished, cancelled, attempts used up, or running
    under another worker's live lease). ``"released"``: handed back to the queue at its
    last checkpoint because this worker is shutting down. ``"lease_lost"``: another
    attempt took over. Otherwise the job's final status.
    """
    attempt = claim(db, settings, job_id, worker)
    if attempt is None:
        return "dropped"
    bind_attempt(attempt.number)
    if attempt.resume_epoch:
        log.info(
            "job %s: attempt %d on %s resumed from checkpoint at epoch %d",
            job_id,
            attempt.number,
            worker,
            attempt.resume_epoch,
        )
    else:
        log.info("job %s: attempt %d started on %s", job_id, attempt.number, worker)
    try:
        if attempt.cancel_requested:
            return _finish(db, settings, attempt, "cancelled")
        return _train(db, settings, attempt)
    except LeaseLost:
        log.warning("job %s: attempt %d lost its lease; stopping", job_id, attempt.number)
        return "lease_lost"
    except MLError as exc:
        return _finish(db, settings, attempt, "failed", error={"type": "data", "message": str(exc)})
    except Exception as exc:
        if _is_outage(exc):
            # The database stayed away longer than db_retry_seconds: leave the job to
            # the sweeper (its lease lapses) rather than fail it for an outage.
            log.exception(
                "job %s: attempt %d gave up during a database outage", job_id, attempt.number
            )
            raise
        # The traceback goes to the worker's log only: it may name files, SQL or data.
        log.exception("job %s: attempt %d crashed", job_id, attempt.number)
        error = {
            "type": "internal",
            "message": f"training failed with an internal error ({type(exc).__name__}); "
            "the worker's log has the details",
        }
        return _finish(db, settings, attempt, "failed", error=error)


def claim(db: Database, settings: Settings, job_id: str, worker: str) -> Attempt | None:
    """Atomically take the job: queued, or running with an expired lease, and attempts left.

    Epoch rows written after the latest checkpoint (by an attempt that died before its
    next checkpoint) are removed, so the new attempt rewrites them.
    """
    now = utcnow()
    with db.transaction() as session:
        row = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.attempt - Job.releases < settings.max_attempts,
                or_(
                    Job.status == "queued",
                    and_(Job.status == "running", Job.lease_until < now),
                ),
            )
            .values(
                status="running",
                attempt=Job.attempt + 1,
                lease_until=now + timedelta(seconds=settings.lease_seconds),
                worker=worker,
                release_requested=False,
                started_at=func.coalesce(Job.started_at, now),
            )
            .returning(Job.attempt, Job.cancel_requested, Job.sweep_id)
        ).first()
        if row is None:
            log.info("job %s: not claimable (finished, missing or leased); message dropped", job_id)
            return None
        resume = session.scalar(select(Checkpoint.epoch).where(Checkpoint.job_id == job_id)) or 0
        session.execute(
            delete(EpochMetric).where(EpochMetric.job_id == job_id, EpochMetric.epoch > resume)
        )
        latest = session.scalar(
            select(EpochMetric).where(EpochMetric.job_id == job_id, EpochMetric.epoch == resume)
        )
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(epoch=resume, latest=_metrics_of(latest) if latest else None)
        )
        return Attempt(
            job_id, row.attempt, row.cancel_requested, resume_epoch=resume, sweep_id=row.sweep_id
        )


def _train(db: Database, settings: Settings, attempt: Attempt) -> str:
    with db.transaction() as session:
        job = session.get(Job, attempt.job_id)
        dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
        if dataset is None:
            raise MLError("the job's dataset was deleted")
        data = DatabaseStorage(session).get(dataset.blob_key)
        target, feature_types = job.target, dict(job.feature_types)
        config = TrainingConfig.from_json(job.hyperparameters)
        checkpoint = session.get(Checkpoint, attempt.job_id) if attempt.resume_epoch else None
        if checkpoint is not None:
            checkpoint = (checkpoint.tensors, checkpoint.state)
    frame = tabular.from_parquet(data, columns=[*feature_types, target])
    prepared = prepare(
        frame,
        target,
        feature_types,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
        scaling=config.scaling,
        folds=config.folds if config.network == "tabular" else 0,
    )
    trainer = prepared.trainer(config)
    if checkpoint is not None:
        trainer.restore(*checkpoint)
    notes = prepared.notes() or None

    def data_ready() -> None:
        # Loading and preparing the data may have taken a while: renew before training.
        with db.transaction() as session:
            _renew(session, settings, attempt, notes=notes)

    _retrying(settings, data_ready)
    heartbeat = _Heartbeat(db, settings, attempt)
    started = time.perf_counter()
    for record in trainer.fit(should_stop=heartbeat):
        due = record.epoch % settings.checkpoint_every_epochs == 0 and not record.stop
        saved = trainer.checkpoint() if due and record.epoch < config.epochs else None
        _record_epoch(db, settings, attempt, record, saved)
        if attempt.cancel_requested or attempt.release_requested:
            break
        if attempt.sweep_id and not record.stop and record.epoch < config.epochs:
            attempt.stop_reason = _retrying(
                settings, partial(trial_stop_reason, db, attempt.job_id, record.epoch)
            )
            if attempt.stop_reason:
                log.info("job %s: stopped early: %s", attempt.job_id, attempt.stop_reason)
                break
    if attempt.cancel_requested:
        return _finish(db, settings, attempt, "cancelled")
    if attempt.release_requested:
        return _release(db, settings, attempt)
    model_epoch, state = trainer.final_state()
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
        "resumed_from_epoch": attempt.resume_epoch or None,
        "folds": prepared.n_folds,
        "temperature": float(state["temperature"]) if "temperature" in state else None,
        # The recipe that trained it: every hyperparameter, resolved.
        "recipe": config.to_json(),
    }
    return _store_model(db, settings, attempt, bundle, metrics)


class _Heartbeat:
    """Called between batches: every few seconds renews the lease and reads the flags."""

    def __init__(self, db: Database, settings: Settings, attempt: Attempt):
        self.db, self.settings, self.attempt = db, settings, attempt
        self.every = max(0.5, min(settings.lease_seconds / 3, 5.0))
        self.last = time.monotonic()

    def __call__(self) -> bool:
        if time.monotonic() - self.last >= self.every:
            _retrying(self.settings, lambda: self._renew())
            self.last = time.monotonic()
        return self.attempt.cancel_requested or self.attempt.release_requested

    def _renew(self) -> None:
        with self.db.transaction() as session:
            _renew(session, self.settings, self.attempt)


def _renew(session, settings: Settings, attempt: Attempt, **values) -> None:
    """Extend the lease (fenced), read the cancel and release flags; LeaseLost if not ours."""
    lease_until = utcnow() + timedelta(seconds=settings.lease_seconds)
    row = _fenced_update(session, attempt, lease_until=lease_until, **values)
    attempt.cancel_requested = row.cancel_requested
    attempt.release_requested = row.release_requested


def _record_epoch(
    db: Database,
    settings: Settings,
    attempt: Attempt,
    record: EpochRecord,
    checkpoint: tuple[bytes, dict] | None,
) -> None:
    metrics = record.metrics()

    def write() -> None:
        with db.transaction() as session:
            _renew(session, settings, attempt, epoch=record.epoch, latest=metrics)
            written = session.scalar(
                select(EpochMetric.attempt).where(
                    EpochMetric.job_id == attempt.job_id, EpochMetric.epoch == record.epoch
                )
            )
            if written is None:
                session.add(EpochMetric(job_id=attempt.job_id, attempt=attempt.number, **metrics))
            elif written != attempt.number:
                raise LeaseLost(attempt.job_id)
            if checkpoint is not None:
                tensors, state = checkpoint
                session.merge(
                    Checkpoint(
                        job_id=attempt.job_id,
                        epoch=record.epoch,
                        attempt=attempt.number,
                        tensors=tensors,
                        state=state,
                        created_at=utcnow(),
                    )
                )

    _retrying(settings, write)


def _store_model(
    db: Database, settings: Settings, attempt: Attempt, bundle: ModelBundle, metrics: dict
) -> str:
    weights = bundle.weights()
    description = bundle.describe()

    def write() -> tuple[str, int]:
        with db.transaction() as session:
            job = session.get(Job, attempt.job_id)
            latest = session.scalar(
                select(func.max(ModelVersion.version)).where(
                    ModelVersion.tenant == job.tenant, ModelVersion.name == job.model_name
                )
            )
            version = (latest or 0) + 1
            _fenced_update(
                session,
                attempt,
                status="succeeded",
                model_version=version,
                stopped_early=attempt.stop_reason is not None,
                stop_reason=attempt.stop_reason,
                finished_at=utcnow(),
                lease_until=None,
            )
            session.execute(delete(Checkpoint).where(Checkpoint.job_id == job.id))
            best = session.scalar(
                select(EpochMetric).where(
                    EpochMetric.job_id == job.id, EpochMetric.epoch == metrics["epoch"]
                )
            )
            version_id = new_id()
            key = f"models/{version_id}.safetensors"
            DatabaseStorage(session).put(key, weights)
            session.add(
                ModelVersion(
                    id=version_id,
                    tenant=job.tenant,
                    name=job.model_name,
                    version=version,
                    job_id=job.id,
                    dataset_id=job.dataset_id or "",
                    target=job.target,
                    classes=list(bundle.classes),
                    features=list(job.features),
                    input_schema=_input_schema(bundle),
                    hyperparameters=job.hyperparameters,
                    metrics={**(_metrics_of(best) if best else {}), **metrics},
                    description=description,
                    weights_key=key,
                    weights_sha256=hashlib.sha256(weights).hexdigest(),
                )
            )
            return job.model_name, version

    for _ in range(5):
        try:
            name, version = _retrying(settings, write)
        except IntegrityError:
            continue  # another job of the same model took this version number: try the next
        log.info("job %s: succeeded as %s version %d", attempt.job_id, name, version)
        return "succeeded"
    raise RuntimeError("could not allocate a model version after 5 tries")


def _finish(
    db: Database, settings: Settings, attempt: Attempt, status: str, error: dict | None = None
) -> str:
    def write() -> None:
        with db.transaction() as session:
            _fenced_update(
                session, attempt, status=status, error=error, finished_at=utcnow(), lease_until=None
            )
            session.execute(delete(Checkpoint).where(Checkpoint.job_id == attempt.job_id))

    _retrying(settings, write)
    log.info("job %s: attempt %d ended %s", attempt.job_id, attempt.number, status)
    return status


def _release(db: Database, settings: Settings, attempt: Attempt) -> str:
    """Hand the job back to the queue; the next attempt resumes from its checkpoint."""

    def write() -> None:
        with db.transaction() as session:
            _fenced_update(
                session,
                attempt,
                status="queued",
                lease_until=None,
                release_requested=False,
                worker=None,
                published_at=None,
                releases=Job.releases + 1,
            )

    _retrying(settings, write)
    log.info(
        "job %s: attempt %d released at epoch %d (worker shutting down)",
        attempt.job_id,
        attempt.number,
        attempt.resume_epoch,
    )
    return "released"


def request_release(db: Database, worker_prefix: str) -> int:
    """Ask every job running under workers named ``worker_prefix…`` to hand itself back."""
    with db.transaction() as session:
        result = session.execute(
            update(Job)
            .where(Job.status == "running", Job.worker.startswith(worker_prefix, autoescape=True))
            .values(release_requested=True)
        )
        return result.rowcount


def _fenced_update(session, attempt: Attempt, **values):
    """Update the job only if this attempt still runs it; returns its cancel and release
    flags, or raises LeaseLost."""
    row = session.execute(
        update(Job)
        .where(Job.id == attempt.job_id, Job.attempt == attempt.number, Job.status == "running")
        .values(**values)
        .returning(Job.cancel_requested, Job.release_requested)
    ).first()
    if row is None:
        raise LeaseLost(attempt.job_id)
    return row


def _retrying(settings: Settings, write: Callable[[], T]) -> T:
    """Run ``write``, retrying through lost connections for up to ``db_retry_seconds``."""
    deadline = time.monotonic() + settings.db_retry_seconds
    delay = 0.2
    while True:
        try:
            return write()
        except DBAPIError as exc:
            if not _is_outage(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning(
                "database unavailable (%s); retrying in %.1f s", type(exc.orig).__name__, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _is_outage(exc: BaseException) -> bool:
    """A lost or refused connection, as opposed to an error in the statement."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    # Connection refused or lost, server shutting down, SQLite busy: all transient.
    return type(exc.orig).__name__ in ("OperationalError", "InterfaceError")


def _metrics_of(row: EpochMetric) -> dict:
    return {
        "epoch": row.epoch,
        "train_loss": row.train_loss,
        "train_accuracy": row.train_accuracy,
        "val_loss": row.val_loss,
        "val_accuracy": row.val_accuracy,
        "learning_rate": row.learning_rate,
        "duration_s": row.duration_s,
        "samples_per_s": row.samples_per_s,
    }


def _input_schema(bundle: ModelBundle) -> list[dict]:
    schema = []
    for column in bundle.encoder.columns:
        entry = {"name": column.name, "type": column.type}
        if column.type == "categorical":
            entry["categories"] = list(column.categories)
        schema.append(entry)
    return schema
