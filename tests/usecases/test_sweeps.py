"""The sweeps use case: a search expanded into trials and checked before anything is
stored, trials created lazily, and the stop rule a worker gives each trial."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from service.api.jobs.schemas import load_hyperparameters
from service.db.models import Job, Sweep
from service.ml.training import EpochRecord
from service.usecases import sweeps
from service.usecases.errors import InvalidFields
from service.usecases.training import AttemptLease, EpochEnd
from tests.support.training import stored_dataset


@pytest.fixture
def dataset_id(db, settings):
    return stored_dataset(db, settings, 60).id


def submit(db, settings, publisher, dataset_id, search, **fields):
    request = sweeps.SweepRequest(
        dataset_id=dataset_id,
        target="species",
        model_name="m",
        hyperparameters=fields.pop("hyperparameters", {"epochs": 2}),
        search=search,
        **fields,
    )
    return sweeps.submit_sweep(db, settings, publisher, "default", request, load_hyperparameters)


def count(db, model) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_grid_becomes_its_trials_and_only_max_parallel_start(db, settings, publisher, dataset_id):
    grid = {"learning_rate": [0.001, 0.01], "hidden_layers": [[8], [16, 16]]}
    report = submit(db, settings, publisher, dataset_id, {"grid": grid}, max_parallel=3)
    assert report.sweep.trials == [
        {"learning_rate": 0.001, "hidden_layers": [8]},
        {"learning_rate": 0.001, "hidden_layers": [16, 16]},
        {"learning_rate": 0.01, "hidden_layers": [8]},
        {"learning_rate": 0.01, "hidden_layers": [16, 16]},
    ]
    assert report.sweep.hyperparameters["epochs"] == 2
    # The base got its defaults: the default recipe's, as a job would.
    assert report.sweep.hyperparameters["recipe"] == "tabular"
    assert report.sweep.hyperparameters["validation_fraction"] == 0.2
    assert len(publisher.published) == 3 and report.counts["pending"] == 1


def test_a_random_search_without_a_seed_gets_one_and_the_seed_fixes_the_trials(
    db, settings, publisher, dataset_id
):
    space = {"n_trials": 3, "seed": None, "parameters": {"dropout": {"uniform": [0, 0.5]}}}
    first = submit(db, settings, publisher, dataset_id, {"random": dict(space)})
    seed = first.sweep.search["random"]["seed"]
    assert isinstance(seed, int)
    again = submit(db, settings, publisher, dataset_id, {"random": {**space, "seed": seed}})
    assert again.sweep.trials == first.sweep.trials


@pytest.mark.parametrize(
    ("search", "field"),
    [
        ({"grid": {"learning_rate": [0.01, -1]}}, "search.grid.learning_rate[1]"),
        ({"grid": {"no_such_knob": [1]}}, "search.grid.no_such_knob"),
        (
            {"random": {"n_trials": 2, "seed": 1, "parameters": {"dropout": {"gauss": [0, 1]}}}},
            "search.random.parameters.dropout",
        ),
    ],
)
def test_a_bad_trial_is_named_by_where_it_came_from_and_nothing_is_stored(
    db, settings, publisher, dataset_id, search, field
):
    with pytest.raises(InvalidFields) as refused:
        submit(db, settings, publisher, dataset_id, search)
    assert list(refused.value.errors) == [field]
    assert count(db, Sweep) == 0 and count(db, Job) == 0 and publisher.published == []


def test_the_stop_rule_leaves_plain_jobs_and_last_epochs_alone(
    db, settings, publisher, dataset_id
):
    from service.api.jobs.schemas import HyperparametersSchema
    from service.usecases import jobs

    request = jobs.JobRequest(
        target="species",
        model_name="m",
        hyperparameters=HyperparametersSchema().load({"epochs": 2}),
        dataset_id=dataset_id,
    )
    job = jobs.submit_job(db, settings, publisher, "default", request)
    lease = AttemptLease.claim(db, settings, job.id, "w")
    record = EpochRecord(1, 1.0, 0.5, 1.0, 0.5, 0.001, 0.1, 100.0)
    assert sweeps.stop_hopeless_trials(EpochEnd(lease, record, last=False)) is None
    report = submit(db, settings, publisher, dataset_id, {"grid": {"seed": [1, 2]}})
    trial = next(iter(t.job_id for t in report.leaderboard if t.job_id))
    trial_lease = AttemptLease.claim(db, settings, trial, "w")
    assert sweeps.stop_hopeless_trials(EpochEnd(trial_lease, record, last=True)) is None
