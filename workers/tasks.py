"""Thin tasks: a job id in, the use case does the work."""

from __future__ import annotations

import os

from billiard.exceptions import WorkerLostError
from celery import shared_task
from celery.worker.request import Request

from service.logs import job_context
from service.usecases.jobs import publish
from service.usecases.sweeps import after_trial, stop_hopeless_trials
from service.usecases.training import Outcome, run_training
from service.usecases.workers import fail_over
from workers.celery_app import TRAIN_TASK
from workers.publisher import CeleryPublisher


class TrainRequest(Request):
    """A training task's request in the worker's main process: when the pool process
    running it dies (SIGKILL, the OOM killer), the job's lease is released at once and
    the job published again, so a new attempt starts within seconds, not after the lease.
    (Celery then rejects the message with requeue, acks_late + reject_on_worker_lost;
    that copy is dropped by the claim or claims first, either way one attempt runs.)"""

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        exc = getattr(exc_info.exception, "exc", exc_info.exception)
        revoked = self._already_cancelled or self._already_revoked
        lost = isinstance(exc, WorkerLostError) or (
            isinstance(exc, (SystemExit, KeyboardInterrupt)) and not revoked
        )
        if lost and self.worker_pid:
            context = self.task.app.trainserve
            fail_over(
                context.database,
                CeleryPublisher(self.task.app),
                f"{self.hostname}/{self.worker_pid}",
                "its pool process exited",
            )
        return super().on_failure(exc_info, send_failed_event, return_ok)


@shared_task(name=TRAIN_TASK, bind=True, Request=TrainRequest)
def train_job(self, job_id: str) -> str:
    """Run one attempt of the job; a duplicate or stale message is dropped by the claim."""
    context = self.app.trainserve
    worker = f"{self.request.hostname}/{os.getpid()}"
    with job_context(job_id):
        outcome = run_training(
            context.database,
            context.settings,
            job_id,
            worker,
            [stop_hopeless_trials],
            device=context.device,
        )
        publisher = CeleryPublisher(self.app)
        if outcome is Outcome.RELEASED:
            # This worker is shutting down: give the job straight to another one.
            publish(context.database, publisher, job_id)
        elif outcome is not Outcome.LEASE_LOST:
            # A trial that ended lets its sweep start the next one (the upkeep loop also does).
            after_trial(context.database, context.settings, publisher, job_id)
    return outcome
