"""Storing a trained model: the next version number of its name, its weights, its input
schema and metrics, and the job's success, in one fenced transaction."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import EpochMetric, Job, JobStatus, ModelVersion, new_id
from service.ml.inference import ModelBundle
from service.ml.tabular import ColumnType
from service.storage import BlobUpload, Storage, backend_for, write_blob
from service.usecases.training.lease import AttemptLease, metrics_of

log = logging.getLogger("service.usecases.training")

#: How many times a version number taken by another job of the same model is skipped.
VERSION_TRIES = 5


def store_model(
    lease: AttemptLease, bundle: ModelBundle, metrics: dict, stop_reason: str | None = None
) -> tuple[str, int]:
    """Make the trained ``bundle`` the next version of the job's model and end the job
    succeeded; returns (name, version). ``stop_reason``: why training ended early.

    The weights' parts are written first, as a ``writing`` blob, and marked ready by the
    transaction that adds the version (like an upload), so a try that rolls back leaves
    no object behind in an object store."""
    stored = _Stored(bundle, bundle.weights(), bundle.describe(), metrics, stop_reason)
    version_id, weights = lease.retry(lambda: _write_weights(lease, stored.weights))
    try:
        for _ in range(VERSION_TRIES):
            try:
                name, version = lease.write(
                    lambda session: _add_version(session, lease, stored, version_id, weights)
                )
            except IntegrityError:
                continue  # another job of the same model took this version number: try the next
            log.info("job %s: succeeded as %s version %d", lease.job_id, name, version)
            return name, version
        raise RuntimeError(f"could not allocate a model version after {VERSION_TRIES} tries")
    except BaseException:
        _remove_unless_stored(lease, weights.key)
        raise


def _write_weights(lease: AttemptLease, data: bytes) -> tuple[str, BlobUpload]:
    version_id = new_id()
    key = f"models/{version_id}.safetensors"
    return version_id, write_blob(lease.db, backend_for(lease.db), key, data)


def _remove_unless_stored(lease: AttemptLease, key: str) -> None:
    """Remove the weights unless a committed version points to them (a commit whose answer
    was lost); a failure here leaves the ``writing`` blob to the upkeep loop."""
    try:
        with lease.db.transaction() as session:
            if session.scalar(select(ModelVersion.id).where(ModelVersion.weights_key == key)):
                return
            Storage(session, backend_for(lease.db)).delete(key)
    except Exception:  # noqa: BLE001
        log.exception("could not remove the unused weights %s; the sweeper will", key)


@dataclass(frozen=True)
class _Stored:
    """What one model version is made of (computed once, whatever the retries)."""

    bundle: ModelBundle
    weights: bytes
    description: dict
    metrics: dict
    stop_reason: str | None


def _add_version(
    session: Session, lease: AttemptLease, stored: _Stored, version_id: str, weights: BlobUpload
) -> tuple[str, int]:
    job = session.get(Job, lease.job_id)
    version = next_version(session, job.tenant, job.model_name)
    lease.end(
        session,
        status=JobStatus.SUCCEEDED,
        model_version=version,
        stopped_early=stored.stop_reason is not None,
        stop_reason=stored.stop_reason,
    )
    best = session.scalar(
        select(EpochMetric).where(
            EpochMetric.job_id == job.id, EpochMetric.epoch == stored.metrics["epoch"]
        )
    )
    weights.commit(session)
    session.add(
        ModelVersion(
            id=version_id,
            tenant=job.tenant,
            name=job.model_name,
            version=version,
            job_id=job.id,
            dataset_id=job.dataset_id or "",
            target=job.target,
            classes=list(stored.bundle.classes),
            features=list(job.features),
            input_schema=input_schema(stored.bundle),
            hyperparameters=job.hyperparameters,
            metrics={**(metrics_of(best) if best else {}), **stored.metrics},
            description=stored.description,
            weights_key=weights.key,
            weights_sha256=hashlib.sha256(stored.weights).hexdigest(),
        )
    )
    return job.model_name, version


def next_version(session: Session, tenant: str, name: str) -> int:
    """One more than the model's latest version (1 for a new model). Two jobs may read the
    same number; the unique (tenant, name, version) lets only one of them store it."""
    latest = session.scalar(
        select(func.max(ModelVersion.version)).where(
            ModelVersion.tenant == tenant, ModelVersion.name == name
        )
    )
    return (latest or 0) + 1


def input_schema(bundle: ModelBundle) -> list[dict]:
    """The columns a predict request sends: name, type and, for categories, the values
    seen in training."""
    schema = []
    for column in bundle.encoder.columns:
        entry = {"name": column.name, "type": column.type}
        if column.type == ColumnType.CATEGORICAL:
            entry["categories"] = list(column.categories)
        schema.append(entry)
    return schema
