"""/v1/sweeps: trials created lazily, leaderboard, early stopping, cancel, failure and
promotion; trials trained in-process by the training use case, one after another."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from service.app import create_app
from service.db.models import Job, Sweep, utcnow
from service.usecases.upkeep import upkeep_pass
from tests.support.data import mixed_csv
from tests.support.training import run_queued

FAST = {
    "recipe": "plain",
    "epochs": 3,
    "hidden_layers": [16],
    "early_stopping_patience": None,
    "seed": 1,
}


@pytest.fixture
def dataset(client):
    return client.post("/v1/datasets", data=mixed_csv(150), content_type="text/csv").get_json()


def sweep_body(dataset, **overrides):
    body = {
        "dataset_id": dataset["id"],
        "target": "species",
        "model_name": "flowers",
        "hyperparameters": FAST,
        "search": {"grid": {"learning_rate": [0.03, 0.0001], "hidden_layers": [[8], [16, 16]]}},
        "max_parallel": 2,
        "early_stopping": {"rule": "none"},
    }
    return {**body, **overrides}


def trial_jobs(db, sweep_id) -> list[Job]:
    with db.transaction() as session:
        return list(
            session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.trial))
        )


def test_a_grid_sweep_runs_every_combination_and_promotes_the_winner(
    client, app, db, publisher, dataset
):
    response = client.post("/v1/sweeps", json=sweep_body(dataset, promote_to="champion"))
    assert response.status_code == 202, response.get_json()
    sweep = response.get_json()
    assert response.headers["Location"].endswith(f"/v1/sweeps/{sweep['id']}")
    assert sweep["status"] == "running" and sweep["n_trials"] == 4
    assert sweep["mode"] == "min" and sweep["metric"] == "val_loss"
    # Lazily: only max_parallel trials exist, and they were published.
    assert sweep["trials_created"] == 2
    assert sweep["counts"] == {
        "pending": 2,
        "queued": 2,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
        "stopped_early": 0,
    }
    assert publisher.published == [j.id for j in trial_jobs(db, sweep["id"])]
    # The first parameter varies slowest (the test client sends keys sorted).
    pending = [t for t in sweep["leaderboard"] if t["status"] == "pending"]
    assert [t["hyperparameters"] for t in pending] == [
        {"hidden_layers": [16, 16], "learning_rate": 0.03},
        {"hidden_layers": [16, 16], "learning_rate": 0.0001},
    ]
    # Trials are ordinary jobs.
    job = client.get(f"/v1/jobs/{publisher.published[0]}").get_json()
    assert (job["sweep_id"], job["trial"], job["stopped_early"]) == (sweep["id"], 0, False)
    assert job["hyperparameters"]["learning_rate"] == 0.03
    assert job["hyperparameters"]["hidden_layers"] == [8]

    run_queued(app)

    done = client.get(f"/v1/sweeps/{sweep['id']}").get_json()
    assert done["status"] == "succeeded", done
    board = done["leaderboard"]
    assert [t["status"] for t in board] == ["succeeded"] * 4
    values = [t["value"] for t in board]
    assert values == sorted(values)
    assert {t["trial"] for t in board} == {0, 1, 2, 3}
    assert sorted(t["model_version"] for t in board) == [1, 2, 3, 4]
    for row in board:
        assert 1 <= row["best_epoch"] <= 3 and row["epoch"] == 3 and not row["stopped_early"]
    winner = board[0]
    assert done["best"]["trial"] == winner["trial"]
    assert done["winner"] == {
        "job_id": winner["job_id"],
        "model": {"name": "flowers", "version": winner["model_version"]},
        "promoted_to": "champion",
    }
    model = client.get("/v1/models/flowers").get_json()
    assert model["aliases"] == {"champion": winner["model_version"]}
    predicted = client.post(
        "/v1/models/flowers/aliases/champion/predict", json={"records": [{"x1": 1.0}]}
    ).get_json()
    assert predicted["model"] == {"name": "flowers", "version": winner["model_version"]}
    listed = client.get("/v1/sweeps").get_json()
    assert [s["id"] for s in listed] == [sweep["id"]] and "leaderboard" not in listed[0]
    assert client.get("/v1/sweeps?status=running").get_json() == []


def test_a_random_sweep_draws_its_trials_from_the_seed(client, db, dataset):
    search = {
        "random": {
            "n_trials": 5,
            "seed": 7,
            "parameters": {
                "learning_rate": {"log_uniform": [1e-4, 1e-1]},
                "batch_size": {"int": [8, 64]},
                "dropout": {"uniform": [0.0, 0.3]},
                "activation": {"choice": ["relu", "tanh"]},
            },
        }
    }
    first = client.post("/v1/sweeps", json=sweep_body(dataset, search=search)).get_json()
    second = client.post("/v1/sweeps", json=sweep_body(dataset, search=search)).get_json()

    def trials(sweep):
        return sorted((t["trial"], t["hyperparameters"]) for t in sweep["leaderboard"])

    assert trials(first) == trials(second) and len(trials(first)) == 5
    for _, values in trials(first):
        assert 1e-4 <= values["learning_rate"] <= 1e-1
        assert 8 <= values["batch_size"] <= 64 and isinstance(values["batch_size"], int)
        assert 0 <= values["dropout"] <= 0.3 and values["activation"] in ("relu", "tanh")
    jobs = trial_jobs(db, first["id"])
    assert jobs[1].hyperparameters["batch_size"] == trials(first)[1][1]["batch_size"]
    # Without a seed, one is drawn and stored, so the sweep can be repeated.
    del search["random"]["seed"]
    drawn = client.post("/v1/sweeps", json=sweep_body(dataset, search=search)).get_json()
    assert isinstance(drawn["search"]["random"]["seed"], int)


def test_a_hopeless_trial_is_stopped_early_and_keeps_a_model(client, app, db, dataset):
    body = sweep_body(
        dataset,
        hyperparameters={**FAST, "epochs": 6},
        search={"grid": {"learning_rate": [0.03, 1e-6]}},
        max_parallel=1,
        early_stopping={"rule": "median", "grace_epochs": 2, "min_trials": 1},
    )
    sweep = client.post("/v1/sweeps", json=body).get_json()
    run_queued(app)
    done = client.get(f"/v1/sweeps/{sweep['id']}").get_json()
    assert done["status"] == "succeeded"
    good, bad = done["leaderboard"]
    assert good["trial"] == 0 and good["epoch"] == 6 and not good["stopped_early"]
    assert bad["trial"] == 1 and bad["stopped_early"] and bad["stopped_at_epoch"] == 2
    assert bad["status"] == "succeeded" and bad["model_version"] == 2
    assert "median stopping rule" in bad["stop_reason"]
    assert done["counts"]["stopped_early"] == 1
    job = client.get(f"/v1/jobs/{bad['job_id']}").get_json()
    assert job["stopped_early"] and job["stop_reason"] == bad["stop_reason"]
    metrics = client.get(f"/v1/jobs/{bad['job_id']}/metrics").get_json()["epochs"]
    assert [e["epoch"] for e in metrics] == [1, 2]


def test_successive_halving_stops_a_trial_at_a_rung(client, app, dataset):
    body = sweep_body(
        dataset,
        hyperparameters={**FAST, "epochs": 6},
        search={"grid": {"learning_rate": [0.03, 0.02, 1e-6]}},
        max_parallel=1,
        early_stopping={"rule": "asha", "grace_epochs": 2, "min_trials": 2, "reduction_factor": 2},
    )
    sweep = client.post("/v1/sweeps", json=body).get_json()
    run_queued(app)
    done = client.get(f"/v1/sweeps/{sweep['id']}").get_json()
    by_trial = {t["trial"]: t for t in done["leaderboard"]}
    assert not by_trial[0]["stopped_early"] and not by_trial[1]["stopped_early"]
    hopeless = by_trial[2]
    assert hopeless["stopped_early"] and hopeless["stopped_at_epoch"] == 2  # the first rung
    assert "successive halving" in hopeless["stop_reason"]
    assert done["leaderboard"][-1]["trial"] == 2


def test_a_sweep_whose_trials_all_fail_ends_failed_with_the_reasons(client, app, db, dataset):
    sweep = client.post("/v1/sweeps", json=sweep_body(dataset, max_parallel=3)).get_json()

    def lose_the_data(job_id):
        with db.transaction() as session:
            session.execute(update(Job).where(Job.id == job_id).values(dataset_id=None))

    run_queued(app, before_each=lose_the_data)
    done = client.get(f"/v1/sweeps/{sweep['id']}").get_json()
    assert done["status"] == "failed" and done["winner"] is None
    assert done["error"]["type"] == "all_trials_failed"
    assert "none of the 4 trials" in done["error"]["message"]
    reasons = done["error"]["trials"]
    assert [r["trial"] for r in reasons] == [0, 1, 2, 3]
    assert all(r["status"] == "failed" and "dataset was deleted" in r["error"] for r in reasons)


def test_cancel_stops_creating_trials_and_cancels_the_unfinished(client, app, db, dataset):
    from service.usecases.training import AttemptLease

    svc = app.extensions["trainserve"]
    sweep = client.post("/v1/sweeps", json=sweep_body(dataset)).get_json()
    running, queued = trial_jobs(db, sweep["id"])
    assert AttemptLease.claim(db, svc.settings, running.id, "w") is not None

    response = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "running" and body["cancel_requested"]
    assert client.get(f"/v1/jobs/{queued.id}").get_json()["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{running.id}").get_json()["cancel_requested"]

    run_queued(app)  # nothing queued: no new trial was created
    from service.usecases.sweeps import after_trial
    from service.usecases.training import run_training

    assert run_training(db, svc.settings, running.id, "w2") == "dropped"  # still leased
    with db.transaction() as session:  # the worker died; its lease lapses
        lapsed = utcnow() - timedelta(seconds=1)
        session.execute(update(Job).where(Job.id == running.id).values(lease_until=lapsed))
    assert run_training(db, svc.settings, running.id, "w2") == "cancelled"
    after_trial(db, svc.settings, svc.publisher, running.id)
    done = client.get(f"/v1/sweeps/{sweep['id']}").get_json()
    assert done["status"] == "cancelled" and done["counts"]["pending"] == 2
    assert done["trials_created"] == 2 and done["winner"] is None
    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 409
    assert client.get("/v1/models/flowers").status_code == 404


def test_the_upkeep_loop_advances_a_sweep_whose_trial_ended_elsewhere(client, app, db, dataset):
    svc = app.extensions["trainserve"]
    sweep = client.post("/v1/sweeps", json=sweep_body(dataset, max_parallel=1)).get_json()
    (first,) = trial_jobs(db, sweep["id"])
    assert client.post(f"/v1/jobs/{first.id}/cancel").status_code == 202  # a plain job cancel
    report = upkeep_pass(db, svc.settings, svc.publisher)
    assert len(report.trials_created) == 1
    assert len(trial_jobs(db, sweep["id"])) == 2
    assert upkeep_pass(db, svc.settings, svc.publisher).trials_created == []  # idempotent


def test_trials_wait_for_room_under_the_tenant_limit(settings, publisher, dataset):
    app = create_app(
        dataclasses.replace(settings, max_active_jobs_per_tenant=3), publisher=publisher
    )
    client = app.test_client()
    dataset = client.post("/v1/datasets", data=mixed_csv(60), content_type="text/csv").get_json()
    refused = client.post("/v1/sweeps", json=sweep_body(dataset, max_parallel=4))
    assert refused.status_code == 400 and "max_parallel" in refused.get_json()["errors"]
    job = {"dataset_id": dataset["id"], "target": "species", "model_name": "other"}
    for _ in range(2):
        assert client.post("/v1/jobs", json=job).status_code == 202
    sweep = client.post("/v1/sweeps", json=sweep_body(dataset, max_parallel=3)).get_json()
    assert sweep["trials_created"] == 1  # one slot left of the tenant's three
    run_queued(app)
    done = client.get(f"/v1/sweeps/{sweep['id']}").get_json()
    assert done["status"] == "succeeded" and done["counts"]["succeeded"] == 4
    with app.extensions["trainserve"].database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Sweep)) == 1
    app.extensions["trainserve"].close()


def test_another_tenants_sweep_is_404(client, dataset):
    assert client.get("/v1/sweeps/nope").status_code == 404
    assert client.post("/v1/sweeps/nope/cancel").status_code == 404


def test_sweeps_and_aliases_belong_to_their_tenant(secured, tenants):
    from tests.support.training import train_model

    acme, globex = tenants["acme"], tenants["globex"]
    client = secured.test_client()
    dataset, _ = train_model(secured, csv=mixed_csv(60), name="flowers", headers=acme)
    sweep = client.post("/v1/sweeps", json=sweep_body(dataset), headers=acme).get_json()
    assert client.get(f"/v1/sweeps/{sweep['id']}", headers=globex).status_code == 404
    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=globex).status_code == 404
    assert client.get("/v1/sweeps", headers=globex).get_json() == []
    # Another tenant's dataset is as absent as a missing one.
    refused = client.post("/v1/sweeps", json=sweep_body(dataset), headers=globex)
    assert refused.status_code == 400 and "dataset_id" in refused.get_json()["errors"]
    alias = "/v1/models/flowers/aliases/champion"
    assert client.put(alias, json={"version": 1}, headers=globex).status_code == 404
    assert client.put(alias, json={"version": 1}, headers=acme).status_code == 200
    assert client.get(alias, headers=globex).status_code == 404
    assert (
        client.post(f"{alias}/predict", json={"records": [{}]}, headers=globex).status_code == 404
    )
    assert client.get("/v1/models/flowers/compare?versions=1,2", headers=globex).status_code == 404
