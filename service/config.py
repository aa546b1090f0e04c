"""Settings, read once from ``TRAINSERVE_*`` environment variables into a frozen dataclass.

Every process (API, worker, upkeep loop, the CLI) builds its settings here and passes
them down; nothing else reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path

PREFIX = "TRAINSERVE_"


class AuthMode(StrEnum):
    """TRAINSERVE_AUTH: API keys required, or every caller is tenant "default" (loopback
    only)."""

    REQUIRED = "required"
    OFF = "off"


AUTH_MODES = tuple(m.value for m in AuthMode)


def default_home() -> Path:
    """Where ``trainserve up`` keeps its files unless told otherwise."""
    return Path(os.environ.get(f"{PREFIX}HOME", Path.home() / ".trainserve"))


def sqlite_urls(home: Path) -> tuple[str, str]:
    """The embedded database and broker URLs for a home directory."""
    home = home.resolve()
    return f"sqlite:///{home / 'trainserve.db'}", f"sqla+sqlite:///{home / 'broker.db'}"


@dataclass(frozen=True)
class Settings:
    """All configuration; each field is ``TRAINSERVE_<FIELD NAME IN CAPITALS>``."""

    database_url: str = ""
    broker_url: str = ""
    # Queue the training tasks go to (the worker consumes it).
    queue: str = "training"
    # Queue of the jobs that ask for "device": "gpu"; only GPU workers consume it.
    gpu_queue: str = "training-gpu"
    # What a worker trains GPU jobs on: "auto" (the first CUDA device if there is one,
    # else none: the worker is a CPU worker), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # A GPU job submitted while no GPU worker has been seen for a lease: "wait" (it is
    # accepted and stays queued, and the job says what it waits for) or "refuse" (409).
    no_gpu_worker: str = "wait"
    # "required": every request needs an API key (Authorization: Bearer ...);
    # "off": everyone is the default tenant (trainserve up, loopback only).
    auth: str = "required"
    # Where blobs' parts live: empty (the database), file:///dir or s3://bucket/prefix;
    # storage_endpoint: an S3-compatible store's http(s)://host:port (AWS_* variables
    # give credentials and region).
    storage_url: str = ""
    storage_endpoint: str = ""
    # The worker's local cache of datasets and encoded float32 matrices (memory-mapped):
    # its directory (empty: <home>/cache) and the bytes it may hold (least recently used
    # entries are removed first).
    cache_dir: str = ""
    cache_bytes: int = 20 * 1024**3
    # Limits, enforced before any work starts. An upload streams to storage and
    # training reads the table a chunk at a time, so these bound disk, not memory.
    max_upload_bytes: int = 50 * 1024**3
    # Any other request body (JSON, read whole): bounds what one request holds in memory.
    max_request_bytes: int = 64 * 1024 * 1024
    max_rows: int = 1_000_000_000
    max_columns: int = 1_000
    max_classes: int = 1_000
    max_epochs: int = 1_000
    max_parameters: int = 20_000_000
    max_predict_rows: int = 10_000
    # Batch predict (a text/csv body answered as text/csv, read a chunk at a time): its
    # own body and row limits, since its memory does not grow with the rows. 5M rows take
    # under a minute on 2 cores; the limit bounds a request's time and its answer on disk.
    max_batch_predict_bytes: int = 1024 * 1024 * 1024
    max_batch_predict_rows: int = 5_000_000
    # Distinct values of one categorical feature (each is a network input), and
    # characters in one cell.
    max_categories: int = 1_000
    max_cell_chars: int = 10_000
    # Queued + running jobs of one tenant at a time (more: 429).
    max_active_jobs_per_tenant: int = 100
    # Reliability: the lease a worker holds on a running job, how often the upkeep loop
    # runs, after how long an unclaimed queued job is published again, and how many
    # attempts a job gets before it fails.
    lease_seconds: float = 60.0
    # How often a running job renews its lease and reads its cancel flag (at most a third
    # of the lease). Shorter leases fail over faster when a host vanishes unseen, at the
    # cost of more writes: one UPDATE per running job every heartbeat (docs/guarantees.md).
    heartbeat_seconds: float = 5.0
    sweep_interval_seconds: float = 15.0
    republish_after_seconds: float = 30.0
    max_attempts: int = 3
    # A checkpoint (weights, optimizer, scheduler, RNG) every this many epochs; a new
    # attempt resumes from the latest one.
    checkpoint_every_epochs: int = 1
    # How long a worker keeps retrying database writes through an outage before it
    # gives up on the attempt (the lease then lapses and the job is requeued).
    db_retry_seconds: float = 60.0
    # PostgreSQL ends a worker's transaction left idle this long, freeing its row locks:
    # a worker cut off mid-transaction must not hold its job's row until TCP gives up
    # (hours), which would stall the upkeep requeue of that job (0: off).
    db_idle_transaction_seconds: float = 60.0
    # Torch threads per training process (0: cores / worker concurrency).
    torch_threads: int = 0
    # A worker's pool process whose peak resident size passed this is replaced after its job.
    worker_max_memory_mb: int = 2048
    # Loaded models kept per API process.
    model_cache_size: int = 16
    # How long an API process may keep serving the previous "latest" version after a new
    # one is published (the name → version resolution is cached that long).
    model_resolve_ttl_seconds: float = 1.0
    # How long an API process may keep accepting a key after it is revoked.
    auth_cache_seconds: float = 2.0
    # The longest a /v1/jobs/{id}/events stream stays open; the client then reconnects
    # with Last-Event-ID and loses nothing (a stream holds one API thread meanwhile).
    event_stream_seconds: float = 300.0
    log_level: str = "INFO"
    # "text" or "json" (one object per line; see service/logs.py).
    log_format: str = "text"
    # Where the API's processes share their Prometheus samples (multiprocess mode);
    # empty: `trainserve api` makes a fresh temporary directory (see docs/operations.md).
    prometheus_dir: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``), then ``overrides``.

        Unset database and broker URLs default to SQLite files under the home directory.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(PREFIX + field.name.upper())
            if raw is not None and raw != "":
                values[field.name] = _parse(field, raw)
        values.update(overrides)
        settings = cls(**values)
        if settings.auth not in AUTH_MODES:
            modes = " or ".join(map(repr, AUTH_MODES))
            raise ValueError(f"{PREFIX}AUTH must be {modes}, not {settings.auth!r}")
        if settings.log_format not in ("text", "json"):
            raise ValueError(
                f"{PREFIX}LOG_FORMAT must be 'text' or 'json', not {settings.log_format!r}"
            )
        if settings.no_gpu_worker not in ("wait", "refuse"):
            raise ValueError(
                f"{PREFIX}NO_GPU_WORKER must be 'wait' or 'refuse', not {settings.no_gpu_worker!r}"
            )
        if not _is_device(settings.device):
            raise ValueError(
                f"{PREFIX}DEVICE must be 'auto', 'cpu', 'cuda' or 'cuda:N', not {settings.device!r}"
            )
        if not settings.database_url or not settings.broker_url:
            home = Path(environ.get(f"{PREFIX}HOME") or default_home())
            database_url, broker_url = sqlite_urls(home)
            settings = dataclasses.replace(
                settings,
                database_url=settings.database_url or database_url,
                broker_url=settings.broker_url or broker_url,
            )
        return settings


def _is_device(value: str) -> bool:
    if value in ("auto", "cpu", "cuda"):
        return True
    kind, _, index = value.partition(":")
    return kind == "cuda" and index.isdigit()


def _parse(field: dataclasses.Field, raw: str) -> object:
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"{PREFIX}{field.name.upper()} must be a {kind}, not {raw!r}") from None
    return raw
