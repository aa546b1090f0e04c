"""The running workers: a registry each worker's main process keeps up to date, and
failover when a worker's death is seen.

Registry: a worker registers its Celery node name, device and queues when it is ready,
touches ``seen_at`` every ``heartbeat_seconds``, and removes its row when it stops. A
GPU job submitted while no GPU worker has been seen within a lease waits (with a note)
or is refused, by ``TRAINSERVE_NO_GPU_WORKER``.

Failover: when something sees a worker die (``trainserve up`` its child, Celery's
prefork parent a pool process, a worker starting under the name of a dead one), the
jobs that worker was running get their lease expired at once, fenced by the attempt
seen, and are published again: the next claim succeeds within seconds instead of after
the lease. A death nobody sees (a host that vanishes) still waits for the lease.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.config import Settings
from service.db.models import Job, Worker, utcnow
from service.db.session import Database
from service.usecases.errors import Conflict
from service.usecases.jobs import Publisher, publish

log = logging.getLogger(__name__)


def register(db: Database, name: str, device: str, queues: list[str]) -> None:
    """Record (or refresh) a worker that is ready to take jobs."""
    now = utcnow()
    with db.transaction() as session:
        row = session.get(Worker, name)
        if row is None:
            session.add(
                Worker(name=name, device=device, queues=queues, started_at=now, seen_at=now)
            )
        else:
            row.device, row.queues, row.started_at, row.seen_at = device, queues, now, now


def heartbeat(db: Database, name: str, device: str, queues: list[str]) -> None:
    """The worker is alive; re-registers it if its row was removed meanwhile."""
    with db.transaction() as session:
        changed = session.execute(
            update(Worker).where(Worker.name == name).values(seen_at=utcnow())
        ).rowcount
    if not changed:
        register(db, name, device, queues)


def unregister(db: Database, name: str) -> None:
    with db.transaction() as session:
        session.execute(delete(Worker).where(Worker.name == name))


def gpu_workers(session: Session, settings: Settings) -> list[str]:
    """Names of the GPU workers seen within a lease that consume the GPU queue."""
    since = utcnow() - timedelta(
        seconds=max(settings.lease_seconds, 3 * settings.heartbeat_seconds)
    )
    rows = session.execute(
        select(Worker.name, Worker.queues).where(
            Worker.seen_at >= since, Worker.device.startswith("cuda")
        )
    ).all()
    return [name for name, queues in rows if settings.gpu_queue in queues]


def gpu_job_notes(session: Session, settings: Settings) -> list[str]:
    """For a GPU job being submitted: ``[]`` if a GPU worker is up; else a note saying what
    the job waits for, or Conflict when ``TRAINSERVE_NO_GPU_WORKER=refuse``."""
    if gpu_workers(session, settings):
        return []
    if settings.no_gpu_worker == "refuse":
        raise Conflict(
            "hyperparameters.device: no GPU worker is running, so a job with device 'gpu' "
            "cannot start (TRAINSERVE_NO_GPU_WORKER=refuse); submit it with device 'cpu', "
            "or start a worker with TRAINSERVE_DEVICE=cuda"
        )
    return [
        f"waiting for a GPU worker: none consuming {settings.gpu_queue!r} was running when the "
        "job was submitted; it stays queued until one starts"
    ]


def expire_leases_of(db: Database, worker: str) -> list[str]:
    """A worker is known to be dead: expire the leases of the jobs it was running.

    ``worker`` is a pool process (``"trainserve-12@host/345"``, the exact ``worker`` of
    its jobs) or ends with ``/`` for every process of a node (``"trainserve-12@host/"``).
    Each update is fenced by the attempt read, so a job another attempt has taken
    meanwhile is left alone. Returns the ids of the jobs released.
    """
    match = (
        Job.worker.startswith(worker, autoescape=True)
        if worker.endswith("/")
        else (Job.worker == worker)
    )
    expired = utcnow() - timedelta(seconds=1)
    released = []
    with db.transaction() as session:
        running = session.execute(
            select(Job.id, Job.attempt).where(Job.status == "running", match)
        ).all()
        for job_id, attempt in running:
            changed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.attempt == attempt, Job.status == "running")
                .values(lease_until=expired)
            ).rowcount
            if changed:
                released.append(job_id)
    return released


def fail_over(db: Database, publisher: Publisher, worker: str, why: str) -> list[str]:
    """Expire the leases of a dead worker's jobs and publish them again at once.

    The next worker to receive a message claims the job as it would after the lease
    (a new attempt, resumed from the last checkpoint; past ``max_attempts`` the claim is
    refused and the upkeep loop fails the job). Never raises: the lease still covers it.
    """
    try:
        jobs = expire_leases_of(db, worker)
    except Exception:  # noqa: BLE001 - the lease and the upkeep loop remain the fallback
        log.exception(
            "could not release the jobs of %s (%s); they wait for their lease", worker, why
        )
        return []
    for job_id in jobs:
        log.warning(
            "job %s: its worker %s died (%s); lease released, published again", job_id, worker, why
        )
        publish(db, publisher, job_id)
    return jobs
