"""Run one attempt of a training job: claim, train epoch by epoch, store the model.

The job row is the source of truth. A worker claims the job with one conditional
UPDATE that also increments ``attempt``; every later write of this attempt carries
``WHERE attempt = <mine>``, so a worker whose lease expired and whose job was
taken over can never overwrite the newer attempt (the attempt is a fencing token).
"""

from __future__ import annotations

import hashlib
import logging
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from service.config import Settings
from service.db.models import Dataset, EpochMetric, Job, ModelVersion, new_id, utcnow
from service.db.session import Database
from service.ml import MLError, tabular
from service.ml.inference import ModelBundle
from service.ml.network import count_parameters
from service.ml.pipeline import prepare
from service.ml.training import EpochRecord, TrainingConfig
from service.storage import DatabaseStorage

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """This attempt no longer owns the job (another attempt took it over)."""


@dataclass
class Attempt:
    """The claimed job as this attempt sees it."""

    job_id: str
    number: int
    cancel_requested: bool


def run_training(db: Database, settings: Settings, job_id: str, worker: str) -> str:
    """Claim ``job_id`` and train it to the end; returns what happened, for the log.

    Returns ``"dropped"`` when the job is not claimable (finished, cancelled, or
    running under another worker's live lease), else the job's final status.
    """
    attempt = claim(db, settings, job_id, worker)
    if attempt is None:
        return "dropped"
    log.info("job %s: attempt %d started on %s", job_id, attempt.number, worker)
    try:
        if attempt.cancel_requested:
            return _finish(db, attempt, "cancelled")
        return _train(db, settings, attempt)
    except LeaseLost:
        log.warning("job %s: attempt %d lost its lease; stopping", job_id, attempt.number)
        return "lease_lost"
    except MLError as exc:
        return _finish(db, attempt, "failed", error={"type": "data", "message": str(exc)})
    except Exception as exc:
        log.exception("job %s: attempt %d crashed", job_id, attempt.number)
        message = f"{type(exc).__name__}: {exc}"
        return _finish(
            db,
            attempt,
            "failed",
            error={"type": "internal", "message": message, "trace": _short_trace()},
        )


def claim(db: Database, settings: Settings, job_id: str, worker: str) -> Attempt | None:
    """Atomically take the job: queued, or running with an expired lease, and attempts left."""
    now = utcnow()
    with db.transaction() as session:
        row = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.attempt < settings.max_attempts,
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
                started_at=func.coalesce(Job.started_at, now),
            )
            .returning(Job.attempt, Job.cancel_requested)
        ).first()
        if row is None:
            log.info("job %s: not claimable (finished, missing or leased); message dropped", job_id)
            return None
        # Without a checkpoint a new attempt starts again from epoch 1.
        session.execute(delete(EpochMetric).where(EpochMetric.job_id == job_id))
        session.execute(update(Job).where(Job.id == job_id).values(epoch=0, latest=None))
        return Attempt(job_id, row.attempt, row.cancel_requested)


def _train(db: Database, settings: Settings, attempt: Attempt) -> str:
    with db.transaction() as session:
        job = session.get(Job, attempt.job_id)
        data = DatabaseStorage(session).get(_dataset_key(session, job))
        target, feature_types = job.target, dict(job.feature_types)
        config = TrainingConfig.from_json(job.hyperparameters)
    frame = tabular.from_parquet(data, columns=[*feature_types, target])
    prepared = prepare(
        frame,
        target,
        feature_types,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
    )
    trainer = prepared.trainer(config)
    heartbeat = _Heartbeat(db, settings, attempt)
    started = time.perf_counter()
    last: EpochRecord | None = None
    for record in trainer.fit(should_stop=heartbeat):
        _record_epoch(db, settings, attempt, record)
        last = record
        if attempt.cancel_requested:
            break
    if attempt.cancel_requested:
        return _finish(db, attempt, "cancelled")
    model_epoch, state = trainer.final_state()
    bundle = ModelBundle.from_state(trainer.arch, prepared.encoder, prepared.labels.classes, state)
    metrics = {
        "epoch": model_epoch,
        "epochs_run": last.epoch if last else 0,
        "val_loss": _epoch_value(db, attempt.job_id, model_epoch, "val_loss"),
        "val_accuracy": _epoch_value(db, attempt.job_id, model_epoch, "val_accuracy"),
        "train_loss": _epoch_value(db, attempt.job_id, model_epoch, "train_loss"),
        "n_parameters": count_parameters(trainer.arch),
        "train_rows": len(prepared.y_train),
        "validation_rows": len(prepared.y_val),
        "dropped_rows": prepared.dropped_rows,
        "training_time_s": time.perf_counter() - started,
    }
    return _store_model(db, attempt, bundle, metrics)


class _Heartbeat:
    """Called between batches: renews the lease and reads the cancel flag every few seconds."""

    def __init__(self, db: Database, settings: Settings, attempt: Attempt):
        self.db, self.settings, self.attempt = db, settings, attempt
        self.every = max(1.0, min(settings.lease_seconds / 3, 10.0))
        self.last = time.monotonic()

    def __call__(self) -> bool:
        if time.monotonic() - self.last >= self.every:
            with self.db.transaction() as session:
                self.attempt.cancel_requested = _renew(session, self.settings, self.attempt)
            self.last = time.monotonic()
        return self.attempt.cancel_requested


def _renew(session, settings: Settings, attempt: Attempt, **values) -> bool:
    """Extend the lease (fenced) and return the cancel flag; raise LeaseLost if not ours."""
    row = session.execute(
        update(Job)
        .where(Job.id == attempt.job_id, Job.attempt == attempt.number, Job.status == "running")
        .values(lease_until=utcnow() + timedelta(seconds=settings.lease_seconds), **values)
        .returning(Job.cancel_requested)
    ).first()
    if row is None:
        raise LeaseLost(attempt.job_id)
    return row.cancel_requested


def _record_epoch(db: Database, settings: Settings, attempt: Attempt, record: EpochRecord) -> None:
    metrics = record.metrics()
    with db.transaction() as session:
        attempt.cancel_requested = _renew(
            session, settings, attempt, epoch=record.epoch, latest=metrics
        )
        session.add(EpochMetric(job_id=attempt.job_id, attempt=attempt.number, **metrics))


def _store_model(db: Database, attempt: Attempt, bundle: ModelBundle, metrics: dict) -> str:
    weights = bundle.weights()
    description = bundle.describe()
    for _ in range(5):
        try:
            with db.transaction() as session:
                job = session.get(Job, attempt.job_id)
                version = (
                    session.scalar(
                        select(func.max(ModelVersion.version)).where(
                            ModelVersion.name == job.model_name
                        )
                    )
                    or 0
                ) + 1
                _fenced_update(
                    session,
                    attempt,
                    status="succeeded",
                    model_version=version,
                    finished_at=utcnow(),
                    lease_until=None,
                )
                version_id = new_id()
                key = f"models/{version_id}.safetensors"
                DatabaseStorage(session).put(key, weights)
                session.add(
                    ModelVersion(
                        id=version_id,
                        name=job.model_name,
                        version=version,
                        job_id=job.id,
                        dataset_id=job.dataset_id or "",
                        target=job.target,
                        classes=list(bundle.classes),
                        features=list(job.features),
                        input_schema=_input_schema(bundle),
                        hyperparameters=job.hyperparameters,
                        metrics=metrics,
                        description=description,
                        weights_key=key,
                        weights_sha256=hashlib.sha256(weights).hexdigest(),
                    )
                )
            log.info("job %s: succeeded as %s version %d", attempt.job_id, job.model_name, version)
            return "succeeded"
        except IntegrityError:
            # Another job of the same model took this version number first: try the next.
            continue
    raise RuntimeError("could not allocate a model version after 5 tries")


def _finish(db: Database, attempt: Attempt, status: str, error: dict | None = None) -> str:
    with db.transaction() as session:
        _fenced_update(
            session, attempt, status=status, error=error, finished_at=utcnow(), lease_until=None
        )
    log.info("job %s: attempt %d ended %s", attempt.job_id, attempt.number, status)
    return status


def _fenced_update(session, attempt: Attempt, **values) -> None:
    row = session.execute(
        update(Job)
        .where(Job.id == attempt.job_id, Job.attempt == attempt.number, Job.status == "running")
        .values(**values)
        .returning(Job.id)
    ).first()
    if row is None:
        raise LeaseLost(attempt.job_id)


def _epoch_value(db: Database, job_id: str, epoch: int, column: str) -> float | None:
    with db.transaction() as session:
        return session.scalar(
            select(getattr(EpochMetric, column)).where(
                EpochMetric.job_id == job_id, EpochMetric.epoch == epoch
            )
        )


def _dataset_key(session, job: Job) -> str:
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
    if dataset is None:
        raise MLError("the job's dataset was deleted")
    return dataset.blob_key


def _input_schema(bundle: ModelBundle) -> list[dict]:
    schema = []
    for column in bundle.encoder.columns:
        entry = {"name": column.name, "type": column.type}
        if column.type == "categorical":
            entry["categories"] = list(column.categories)
        schema.append(entry)
    return schema


def _short_trace() -> str:
    return "".join(traceback.format_exc(limit=5))[-2000:]
