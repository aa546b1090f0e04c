"""The Celery app, built from :class:`~service.config.Settings` by :func:`create_celery`.

Settings for long, idempotent training tasks (see docs/architecture.md): late acks,
reject on worker lost, prefetch 1, a pool process replaced once it has grown past
TRAINSERVE_WORKER_MAX_MEMORY_MB, and no result backend
(the job row in the database is the result).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_process_init, worker_shutting_down

from service.config import Settings
from service.db.session import Database

TRAIN_TASK = "trainserve.train_job"


@dataclass
class WorkerContext:
    """What a task needs, created with the app and re-bound after each fork."""

    settings: Settings
    database: Database
    concurrency: int = 1


def create_celery(
    settings: Settings, *, concurrency: int = 1, database: Database | None = None
) -> Celery:
    """Build the Celery app for ``settings``; importing this module does nothing."""
    app = Celery("trainserve", broker=settings.broker_url, set_as_current=True)
    transport_options: dict = {"visibility_timeout": 12 * 3600}
    if settings.broker_url.startswith("sqla+"):
        # kombu's SQLAlchemy transport hands these to create_engine (it polls every 1 s);
        # a generous busy timeout rides out the API and worker writing at once.
        transport_options = {"connect_args": {"timeout": 30}}
    app.conf.update(
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        # A pool process serves job after job, and is replaced after a job once its peak
        # resident size (ru_maxrss) has passed this (docs/architecture.md: a fresh
        # process per job made every job wait 1-4 s before it started).
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024,
        # The lease, not the broker, guards against a second attempt: keep training
        # through a broker blip instead of cancelling (see docs/architecture.md).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        broker_transport_options=transport_options,
        include=["workers.tasks"],
    )
    if database is None:
        # A worker's transaction idle for longer than a lease is from a worker that can no
        # longer hold its job: PostgreSQL ends it and frees the job's row (see make_engine).
        database = Database(
            settings.database_url, idle_transaction_timeout_s=settings.lease_seconds
        )
    app.trainserve = WorkerContext(settings, database, concurrency)
    return app


@setup_logging.connect
def _setup_logging(loglevel=None, **_kwargs) -> None:
    """Celery leaves logging to us when this signal has a receiver: trainserve's handler
    (text or JSON, with the job id and attempt on every line of a job) on the root logger."""
    from celery import current_app

    from service.logs import configure_logging

    context: WorkerContext | None = getattr(current_app, "trainserve", None)
    settings = context.settings if context is not None else Settings.from_env()
    configure_logging(loglevel or settings.log_level, settings.log_format)


@worker_init.connect
def _preload(**_kwargs) -> None:
    """In the main process, before the pool forks: import what every job would import.

    torch's optimizers import ``torch._dynamo`` lazily, about 3 s on this machine; with
    one child per task that would be paid by every job. Importing runs no torch
    computation, so the main process stays fork-safe.
    """
    import torch._dynamo  # noqa: F401
    import torch.optim  # noqa: F401


@worker_process_init.connect
def _init_child(**_kwargs) -> None:
    """In each forked pool process: fresh DB connections and this process's torch threads."""
    from celery import current_app

    context: WorkerContext | None = getattr(current_app, "trainserve", None)
    if context is None:
        return
    context.database.after_fork()
    import torch

    threads = context.settings.torch_threads or max(
        1, (os.cpu_count() or 1) // max(1, context.concurrency)
    )
    torch.set_num_threads(threads)
    # What the process has loaded (torch, Celery, pandas...) stays for its life: keep it
    # out of the collector's full passes, which the epoch loop's allocations trigger.
    import gc

    gc.collect()
    gc.freeze()


@worker_shutting_down.connect
def _release_jobs(sender=None, **_kwargs) -> None:
    """In the main process on shutdown: ask this worker's running jobs to hand themselves
    back at their last checkpoint (the training loop checks within seconds)."""
    from celery import current_app

    from service.usecases.training import request_release

    context: WorkerContext | None = getattr(current_app, "trainserve", None)
    if context is None or sender is None:
        return
    try:
        count = request_release(context.database, f"{sender}/")
    except Exception:  # noqa: BLE001 - shutdown goes on; the lease covers the rest
        logging.getLogger(__name__).exception("could not ask running jobs to release")
        return
    if count:
        logging.getLogger(__name__).warning(
            "shutting down: %d running job(s) asked to go back to the queue", count
        )
