"""Publishing job ids to the broker, with a short bounded retry so the API never hangs."""

from __future__ import annotations

from celery import Celery

from workers.celery_app import TRAIN_TASK


class CeleryPublisher:
    """Sends ``trainserve.train_job(job_id)`` with the job id as the task id."""

    def __init__(self, app: Celery):
        self.app = app

    def publish(self, job_id: str, *, gpu: bool = False) -> None:
        """Send the job to the training queue, or with ``gpu`` to the GPU workers' queue."""
        queue = self.app.trainserve.settings.gpu_queue if gpu else self.app.conf.task_default_queue
        self.app.send_task(
            TRAIN_TASK,
            args=[job_id],
            task_id=job_id,
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        )

    def ping(self) -> None:
        """Raise if the broker cannot be reached."""
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def close(self) -> None:
        """Release the broker connections of this process."""
        self.app.close()
