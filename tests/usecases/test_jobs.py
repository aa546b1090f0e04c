"""The jobs use case: submit (commit, then publish), idempotency, cancel, and the checks
a submission gets against its dataset; against a real SQLite file."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select

from service.api.jobs.schemas import HyperparametersSchema
from service.db.models import Job
from service.ml.network import Architecture, count_parameters
from service.ml.training import TrainingConfig, architecture_for
from service.usecases import jobs
from service.usecases.errors import Conflict, InvalidRequest, NotFound
from service.usecases.jobs.plan import _check_size
from service.usecases.training import AttemptLease
from service.usecases.training import data as training_data
from tests.support.training import stored_dataset


@pytest.fixture
def dataset_id(db, settings):
    return stored_dataset(db, settings, 60).id


def request(dataset_id, **hyperparameters) -> jobs.JobRequest:
    return jobs.JobRequest(
        target="species",
        model_name="m",
        hyperparameters=HyperparametersSchema().load({"epochs": 2, **hyperparameters}),
        dataset_id=dataset_id,
    )


def test_a_job_is_committed_then_published(db, settings, publisher, dataset_id):
    job = jobs.submit_job(db, settings, publisher, "default", request(dataset_id))
    assert publisher.published == [job.id]
    stored = jobs.get_job(db, "default", job.id)
    assert stored.status == "queued" and stored.publish_count == 1
    assert stored.published_at is not None
    assert stored.hyperparameters["seed"] is not None  # drawn and stored


def test_a_broker_that_is_down_leaves_the_job_queued_for_the_upkeep_loop(
    db, settings, publisher, dataset_id
):
    publisher.down = True
    job = jobs.submit_job(db, settings, publisher, "default", request(dataset_id))
    stored = jobs.get_job(db, "default", job.id)
    assert stored.status == "queued" and stored.published_at is None
    publisher.down = False
    assert jobs.publish(db, publisher, job.id) and publisher.published == [job.id]


def test_an_idempotency_key_returns_the_same_job_within_a_tenant(
    db, settings, publisher, dataset_id
):
    def submit(tenant):
        return jobs.submit_job(
            db, settings, publisher, tenant, request(dataset_id), idempotency_key="k"
        )

    first = submit("default")
    assert submit("default").id == first.id and publisher.published == [first.id]
    with pytest.raises(InvalidRequest) as refused:  # the key is the tenant's; so is the dataset
        submit("other")
    assert refused.value.field == "dataset_id"


def test_cancel_a_queued_running_and_finished_job(db, settings, publisher, dataset_id):
    queued = jobs.submit_job(db, settings, publisher, "default", request(dataset_id))
    assert jobs.cancel_job(db, "default", queued.id).status == "cancelled"
    with pytest.raises(Conflict):
        jobs.cancel_job(db, "default", queued.id)
    running = jobs.submit_job(db, settings, publisher, "default", request(dataset_id))
    assert AttemptLease.claim(db, settings, running.id, "w") is not None
    flagged = jobs.cancel_job(db, "default", running.id)
    assert flagged.status == "running" and flagged.cancel_requested
    with pytest.raises(NotFound):
        jobs.cancel_job(db, "other", running.id)


def test_the_size_limit_counts_the_inputs_the_encoder_will_make(
    db, settings, publisher, dataset_id
):
    """The submit-time estimate of the network's inputs is the width of the encoder the
    worker fits (service.ml.preprocessing.column_width), so max_parameters is exact here."""
    # The plain recipe's MLP, whose parameters count_parameters(Architecture) gives.
    plain = {"seed": 0, "recipe": "plain"}
    first = jobs.submit_job(db, settings, publisher, "default", request(dataset_id, **plain))
    prepared = training_data.load(AttemptLease.claim(db, settings, first.id, "w")).prepared
    arch = Architecture(
        prepared.encoder.n_inputs, len(prepared.labels.classes), (64, 64), "relu", 0.0
    )
    exact = count_parameters(arch)
    at_limit = dataclasses.replace(settings, max_parameters=exact)
    jobs.submit_job(db, at_limit, publisher, "default", request(dataset_id, **plain))
    below = dataclasses.replace(settings, max_parameters=exact - 1)
    with pytest.raises(InvalidRequest) as refused:
        jobs.submit_job(db, below, publisher, "default", request(dataset_id, **plain))
    assert refused.value.field == "hyperparameters.hidden_layers"


@pytest.mark.parametrize("labelled_rows, members", [(1_500, 3), (3_000, 4), (6_000, 1)])
def test_the_size_limit_counts_the_members_folds_auto_will_train(settings, labelled_rows, members):
    """The default recipe bags by the table's labelled rows (3 folds under 2,000, 4 under
    5,000, one network above): the limit counts exactly the members the job will have."""
    config = TrainingConfig.from_json(HyperparametersSchema().load({"seed": 0}))
    types = {f"x{i}": "numeric" for i in range(5)}
    columns = {name: {"n_unique": 100, "missing": 0} for name in types} | {
        "y": {"n_unique": 3, "missing": 0}
    }
    arch = architecture_for(config, 5, 3, tuple(range(5)), folds=members if members > 1 else 0)
    exact = count_parameters(arch)
    at_limit = dataclasses.replace(settings, max_parameters=exact)
    _check_size(at_limit, config, types, columns, "y", labelled_rows=labelled_rows)
    below = dataclasses.replace(settings, max_parameters=exact - 1)
    with pytest.raises(InvalidRequest) as refused:
        _check_size(below, config, types, columns, "y", labelled_rows=labelled_rows)
    assert refused.value.field == "hyperparameters.hidden_layers"


def test_a_rejected_job_stores_nothing(db, settings, publisher, dataset_id):
    bad = dataclasses.replace(request(dataset_id), target="no_such_column")
    with pytest.raises(InvalidRequest):
        jobs.submit_job(db, settings, publisher, "default", bad)
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    assert publisher.published == []
