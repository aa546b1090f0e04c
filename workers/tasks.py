"""Thin tasks: a job id in, the use case does the work."""

from __future__ import annotations

import os

from celery import shared_task

from service.logs import job_context
from service.usecases.jobs import publish
from service.usecases.sweeps import after_trial, stop_hopeless_trials
from service.usecases.training import Outcome, run_training
from workers.celery_app import TRAIN_TASK
from workers.publisher import CeleryPublisher


@shared_task(name=TRAIN_TASK, bind=True)
def train_job(self, job_id: str) -> str:
    """Run one attempt of the job; a duplicate or stale message is dropped by the claim."""
    context = self.app.trainserve
    worker = f"{self.request.hostname}/{os.getpid()}"
    with job_context(job_id):
        outcome = run_training(
            context.database, context.settings, job_id, worker, [stop_hopeless_trials]
        )
        publisher = CeleryPublisher(self.app)
        if outcome is Outcome.RELEASED:
            # This worker is shutting down: give the job straight to another one.
            publish(context.database, publisher, job_id)
        elif outcome is not Outcome.LEASE_LOST:
            # A trial that ended lets its sweep start the next one (the upkeep loop also does).
            after_trial(context.database, context.settings, publisher, job_id)
    return outcome
