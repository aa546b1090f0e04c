"""The tables. Serialisation lives in the API schemas, never here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class JobStatus(StrEnum):
    """A training job's state: queued → running → succeeded | failed | cancelled (a
    running job also goes back to queued when its worker hands it back or dies; see
    FINISHED_STATUSES and ACTIVE_STATUSES below)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SweepStatus(StrEnum):
    """A hyperparameter sweep's state."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The values as plain text (for dict keys, JSON and OpenAPI enums).
JOB_STATUSES: tuple[str, ...] = tuple(s.value for s in JobStatus)
FINISHED_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled")
ACTIVE_STATUSES: tuple[str, ...] = ("queued", "running")
SWEEP_STATUSES: tuple[str, ...] = tuple(s.value for s in SweepStatus)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A random UUID as text: the id of datasets, jobs and model versions."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC (the same on SQLite and PostgreSQL), returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Blob(Base):
    """Bytes behind a key: dataset Parquet files, model weights, checkpoints (``storage``).

    The bytes are in parts (``blob_parts``) of at most a few tens of MB, in the database
    or in an object store. ``state`` is ``writing`` while an upload streams in,
    ``ready`` once the row that points to the blob is committed with it, and
    ``deleting`` once discarded (its parts go after the commit).
    """

    __tablename__ = "blobs"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # The SHA-256 of the bytes: blobs written before migration 0012 (NULL since).
    sha256: Mapped[str | None] = mapped_column(String(64))
    # The SHA-256 of the parts' SHA-256 digests, in order: blobs written since 0012.
    parts_sha256: Mapped[str | None] = mapped_column(String(64))
    parts: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="ready")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Touched by every part written, so a live upload is never taken for an abandoned one.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class BlobPart(Base):
    """One part of a blob: its size and SHA-256, and its bytes when they live here."""

    __tablename__ = "blob_parts"

    blob_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)


DEFAULT_TENANT = "default"


class ApiKey(Base):
    """An API key of a tenant; only the SHA-256 of the key is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Space-separated scopes (service.usecases.keys.SCOPES); keys made before scopes
    # existed were given all of them by migration 0008.
    scopes: Mapped[str] = mapped_column(String(64), default="admin predict read train")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True, default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(255))
    n_rows: Mapped[int] = mapped_column(Integer)
    n_columns: Mapped[int] = mapped_column(Integer)
    columns: Mapped[list[Any]]
    blob_key: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Job(Base):
    """One training job. ``attempt`` is the fencing token of the worker that runs it."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True, default=DEFAULT_TENANT)
    # Kept when the dataset is deleted after the job ended (set to NULL then).
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), index=True)
    target: Mapped[str] = mapped_column(String(255))
    features: Mapped[list[Any]]
    feature_types: Mapped[dict[str, Any]]
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    hyperparameters: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when the worker running the job shuts down: the job goes back to the queue
    # at its last checkpoint instead of holding up the shutdown.
    release_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    epochs: Mapped[int] = mapped_column(Integer)
    latest: Mapped[dict[str, Any] | None]
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts that ended by handing the job back (worker shutdown): they raised
    # ``attempt`` (the fencing token) but do not count against max_attempts.
    releases: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    published_at: Mapped[datetime | None]
    publish_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[dict[str, Any] | None]
    # What training decided about the data: dropped columns, ID-like columns, ...
    notes: Mapped[list[Any] | None]
    model_version: Mapped[int | None] = mapped_column(Integer)
    # "<tenant>:<Idempotency-Key header>", so keys are per tenant.
    idempotency_key: Mapped[str | None] = mapped_column(String(320), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # A trial of a sweep: which sweep, and its trial number (0-based).
    sweep_id: Mapped[str | None] = mapped_column(String(36), index=True)
    trial: Mapped[int | None] = mapped_column(Integer)
    # Ended by the sweep's early-termination rule (the job still succeeds, with a model).
    stopped_early: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_reason: Mapped[str | None] = mapped_column(Text)


class EpochMetric(Base):
    """One finished epoch of one job: unique per (job, epoch)."""

    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("job_id", "epoch", name="uq_epoch_metrics_job_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float] = mapped_column(Float)
    train_accuracy: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    learning_rate: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    samples_per_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    """The latest checkpoint of a running job: trainer state after ``epoch``.

    The tensors are the blob ``blob_key`` (in parts, see ``storage``); the JSON state is
    here. Pointed to in the same transaction as that epoch's metrics row; deleted, with
    its blob, when the job ends (``usecases.training.checkpoints``).
    """

    __tablename__ = "checkpoints"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    blob_key: Mapped[str] = mapped_column(String(255))
    state: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """An immutable trained model: one version of a named model."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("tenant", "name", "version", name="uq_model_versions_tenant_name_version"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True, default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), unique=True)
    dataset_id: Mapped[str] = mapped_column(String(36))
    target: Mapped[str] = mapped_column(String(255))
    classes: Mapped[list[Any]]
    features: Mapped[list[Any]]
    input_schema: Mapped[list[Any]]
    hyperparameters: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    description: Mapped[dict[str, Any]]
    weights_key: Mapped[str] = mapped_column(String(255))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sweep(Base):
    """A hyperparameter sweep: every trial's hyperparameters, fixed at submit; the trials
    themselves are jobs (``Job.sweep_id``), created lazily, ``max_parallel`` at a time."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True, default=DEFAULT_TENANT)
    dataset_id: Mapped[str | None] = mapped_column(String(36))
    target: Mapped[str] = mapped_column(String(255))
    features: Mapped[list[Any] | None]
    column_types: Mapped[dict[str, Any] | None]
    model_name: Mapped[str] = mapped_column(String(128))
    hyperparameters: Mapped[dict[str, Any]]
    search: Mapped[dict[str, Any]]
    # One entry per trial: the searched hyperparameters' values.
    trials: Mapped[list[Any]]
    metric: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(8))
    max_parallel: Mapped[int] = mapped_column(Integer)
    early_stopping: Mapped[dict[str, Any]]
    promote_to: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=SweepStatus.RUNNING, index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # How many trial jobs exist so far (the next trial number).
    created_trials: Mapped[int] = mapped_column(Integer, default=0)
    winner_job_id: Mapped[str | None] = mapped_column(String(36))
    winner_version: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]


class ModelAlias(Base):
    """A movable name for one version of a model (MLflow's ``@alias``)."""

    __tablename__ = "model_aliases"
    __table_args__ = (
        UniqueConstraint("tenant", "name", "alias", name="uq_model_aliases_tenant_name_alias"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(128))
    alias: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Worker(Base):
    """A running `trainserve worker`, as its main process last reported itself: what it
    trains on and which queues it consumes (so a GPU job can tell whether anyone will
    take it). A row not seen for a lease belongs to a worker that is gone."""

    __tablename__ = "workers"

    # The Celery node name, e.g. "trainserve-4242@gpu-node-1"; jobs it runs carry
    # "<name>/<pool process id>" in their ``worker`` column.
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    # "cpu", or the CUDA device it trains GPU jobs on ("cuda:0").
    device: Mapped[str] = mapped_column(String(64))
    queues: Mapped[list[Any]]
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(index=True)
