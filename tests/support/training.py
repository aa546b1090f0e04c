"""Test helpers shared by the API tests."""

from __future__ import annotations

from service.usecases.training import run_training
from tests.support.data import mixed_csv


def train_model(
    app,
    *,
    csv: bytes | None = None,
    target: str = "species",
    name: str = "iris",
    hyperparameters: dict | None = None,
    headers: dict | None = None,
    dataset_id: str | None = None,
) -> tuple[dict, dict]:
    """Upload a table (default: 120 rows of ``mixed_csv``), submit a job through the API and
    run it in-process with the training use case. Returns the dataset and the job."""
    client = app.test_client()
    headers = headers or {}
    if dataset_id is None:
        dataset = client.post(
            "/v1/datasets", data=csv or mixed_csv(120), content_type="text/csv", headers=headers
        ).get_json()
    else:
        dataset = client.get(f"/v1/datasets/{dataset_id}", headers=headers).get_json()
    job = client.post(
        "/v1/jobs",
        json={
            "dataset_id": dataset["id"],
            "target": target,
            "model_name": name,
            # The plain recipe unless a test asks for another: these tests are about the
            # service, and the tabular recipe costs ten times as much (bench/README.md).
            "hyperparameters": {"recipe": "plain", "epochs": 2, **(hyperparameters or {})},
        },
        headers=headers,
    ).get_json()
    svc = app.extensions["trainserve"]
    assert run_training(svc.database, svc.settings, job["id"], "test") == "succeeded"
    return dataset, job


def stored_dataset(db, settings, rows: int = 300):
    """``mixed_csv(rows)`` stored through the use case as dataset ``d`` of tenant
    ``default``."""
    from service.usecases import datasets

    return datasets.upload_dataset(
        db, settings, "default", datasets.TableUpload.of_csv("d", mixed_csv(rows))
    )


def queued_job(db, settings, publisher, *, rows: int = 60, **hyperparameters) -> str:
    """Upload ``mixed_csv(rows)`` and submit a job through the use cases (tenant
    ``default``; the plain recipe and 3 epochs unless ``hyperparameters`` say otherwise);
    returns the queued job's id."""
    from service.api.jobs.schemas import HyperparametersSchema
    from service.usecases import jobs

    dataset = stored_dataset(db, settings, rows)
    hyperparameters = {"recipe": "plain", "epochs": 3, **hyperparameters}
    request = jobs.JobRequest(
        target="species",
        model_name="m",
        hyperparameters=HyperparametersSchema().load(hyperparameters),
        dataset_id=dataset.id,
    )
    return jobs.submit_job(db, settings, publisher, "default", request).id


def run_queued(app, before_each=None) -> list[str]:
    """Run every queued job in-process, one after another, as a worker would (including the
    sweep advance after each), until none is queued; ``before_each(job_id)`` runs first.
    Returns the job ids in the order they ran."""
    from sqlalchemy import select

    from service.db.models import Job
    from service.usecases.sweeps import after_trial, stop_hopeless_trials

    svc = app.extensions["trainserve"]
    ran: list[str] = []
    while True:
        with svc.database.transaction() as session:
            queued = list(
                session.scalars(
                    select(Job.id).where(Job.status == "queued").order_by(Job.created_at, Job.trial)
                )
            )
        if not queued:
            return ran
        for job_id in queued:
            if before_each is not None:
                before_each(job_id)
            run_training(svc.database, svc.settings, job_id, "test", [stop_hopeless_trials])
            after_trial(svc.database, svc.settings, svc.publisher, job_id)
            ran.append(job_id)


def kill_first_attempt_after(monkeypatch, epoch: int):
    """Make a job's first attempt die like a killed worker (``SystemExit``) right after
    ``epoch``'s record and checkpoint are written; returns the real ``record_epoch``, to
    put back for a run that should not die."""
    from service.usecases.training import run as training_run

    original = training_run.record_epoch

    def die_after(lease, record, checkpoint):
        original(lease, record, checkpoint)
        if record.epoch == epoch and lease.number == 1:
            raise SystemExit("worker killed")

    monkeypatch.setattr(training_run, "record_epoch", die_after)
    return original
