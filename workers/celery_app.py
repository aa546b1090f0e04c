"""The Celery app, built from :class:`~service.config.Settings` by :func:`create_celery`.

Settings for long, idempotent training tasks (see docs/architecture.md): late acks,
reject on worker lost, prefetch 1, a pool process replaced once it has grown past
TRAINSERVE_WORKER_MAX_MEMORY_MB, and no result backend
(the job row in the database is the result).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

from celery import Celery, bootsteps
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutting_down,
)

from service.config import Settings
from service.db.session import Database

TRAIN_TASK = "trainserve.train_job"


@dataclass
class WorkerContext:
    """What a task needs, created with the app and re-bound after each fork."""

    settings: Settings
    database: Database
    concurrency: int = 1
    # What this worker trains GPU jobs on ("cpu": a CPU worker), and the queues it consumes.
    device: str = "cpu"
    queues: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def create_celery(
    settings: Settings,
    *,
    concurrency: int = 1,
    database: Database | None = None,
    device: str = "cpu",
    queues: list[str] | None = None,
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
        # How long the parent waits for a result from a pool process that died before it
        # raises WorkerLostError (Celery's default: 10 s). There is no result to wait
        # for (ignore_result), and the failover of the job starts at that error.
        worker_lost_wait=1.0,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        broker_transport_options=transport_options,
        include=["workers.tasks"],
    )
    app.steps["worker"].add(_WatchPool)
    if database is None:
        # A worker's transaction idle this long is from a worker cut off from the
        # database: PostgreSQL ends it and frees the job's row (see make_engine).
        database = Database.of(
            settings, idle_transaction_timeout_s=settings.db_idle_transaction_seconds or None
        )
    app.trainserve = WorkerContext(
        settings, database, concurrency, device, queues or [settings.queue]
    )
    return app


class _WatchPool(bootsteps.StartStopStep):
    """Look for dead pool processes every half second.

    Under the event loop (the Redis transport) Celery's prefork pool notices a process
    that died with its job only on a 5 s timer, then waits ``worker_lost_wait`` before
    it raises WorkerLostError, where the job's failover starts (workers/tasks.py). Half
    a second keeps kill → failover to about 1.5 s; the check is a few ``waitpid``s.
    """

    requires = ("celery.worker.components:Pool",)

    def start(self, worker) -> None:
        hub, pool = getattr(worker, "hub", None), getattr(worker.pool, "_pool", None)
        if hub is not None and hasattr(pool, "maintain_pool"):
            hub.call_repeatedly(0.5, pool.maintain_pool)


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
def _preload(sender=None, **_kwargs) -> None:
    """In the main process, before the pool forks: import what every job would import,
    and release the jobs of an earlier worker of this very name, which is dead.

    torch's optimizers import ``torch._dynamo`` lazily, about 3 s on this machine; with
    one child per task that would be paid by every job. Importing runs no torch
    computation, so the main process stays fork-safe.

    A worker's name is ``trainserve-<pid>@<host>``: one of the same name that held jobs
    ran on this host with this process id, so it has exited. In a container restarted
    by Kubernetes (same pod name, the worker is process 1 again) that is the container
    that just died: its jobs are failed over at once instead of after their lease.
    """
    from celery import current_app

    context: WorkerContext | None = getattr(current_app, "trainserve", None)
    if context is not None and sender is not None:
        from service.usecases.workers import fail_over
        from workers.publisher import CeleryPublisher

        fail_over(
            context.database,
            CeleryPublisher(current_app),
            f"{sender.hostname}/",
            "a worker of the same name started",
        )
    import torch._dynamo  # noqa: F401
    import torch.optim  # noqa: F401


@worker_ready.connect
def _register(sender=None, **_kwargs) -> None:
    """In the main process once it consumes: register in the worker table and keep the
    row fresh every ``heartbeat_seconds`` from a thread (GPU jobs look for GPU workers)."""
    from celery import current_app

    from service.usecases import workers

    context: WorkerContext | None = getattr(current_app, "trainserve", None)
    if context is None or sender is None:
        return
    name, db = sender.hostname, context.database

    def beat() -> None:
        while not context.stop.is_set():
            try:
                workers.heartbeat(db, name, context.device, context.queues)
            except Exception:  # noqa: BLE001 - a missed beat is retried; jobs do not depend on it
                logging.getLogger(__name__).warning("worker heartbeat failed", exc_info=True)
            context.stop.wait(context.settings.heartbeat_seconds)

    threading.Thread(target=beat, name="trainserve-heartbeat", daemon=True).start()


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
    context.stop.set()
    try:
        from service.usecases.workers import unregister

        unregister(context.database, str(sender))
    except Exception:  # noqa: BLE001 - the row ages out after a lease
        logging.getLogger(__name__).warning("could not unregister the worker", exc_info=True)
    try:
        count = request_release(context.database, f"{sender}/")
    except Exception:  # noqa: BLE001 - shutdown goes on; the lease covers the rest
        logging.getLogger(__name__).exception("could not ask running jobs to release")
        return
    if count:
        logging.getLogger(__name__).warning(
            "shutting down: %d running job(s) asked to go back to the queue", count
        )
