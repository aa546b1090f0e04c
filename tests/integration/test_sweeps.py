"""A hyperparameter sweep on real workers: a 6-trial random search with early termination
on two `trainserve worker` processes (PostgreSQL + Redis), and a sweep that survives a
killed worker (embedded SQLite database and broker)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from service.config import Settings
from service.db.migrate import upgrade
from service.usecases.upkeep import upkeep_pass
from tests.integration.helpers import wait_until
from tests.support.data import mixed_csv

pytestmark = pytest.mark.integration

# Short leases so a dead worker's trial is requeued in seconds.
FAST = {"lease_seconds": 3.0, "republish_after_seconds": 2.0}
RECORD = {"x1": 2.5, "x2": 1.0, "colour": "red", "flag": True}


def make_settings(database_url: str, broker_url: str, queue: str) -> Settings:
    upgrade(database_url)
    return Settings.from_env(
        {}, database_url=database_url, broker_url=broker_url, queue=queue, auth="off", **FAST
    )


def random_sweep(client, *, epochs: int, rows: int = 2000, max_parallel: int = 2) -> dict:
    dataset = client.post("/v1/datasets", data=mixed_csv(rows), content_type="text/csv")
    body = {
        "dataset_id": dataset.get_json()["id"],
        "target": "species",
        "model_name": "flowers",
        "hyperparameters": {
            "recipe": "plain",
            "epochs": epochs,
            "batch_size": 16,
            "early_stopping_patience": None,
            "seed": 3,
        },
        # Seed 2 draws learning rates from 3e-6 (hopeless) to 0.05, so the rule has work.
        # (The test client sends keys sorted: hidden_layers is drawn first.)
        "search": {
            "random": {
                "n_trials": 6,
                "seed": 2,
                "parameters": {
                    "learning_rate": {"log_uniform": [1e-6, 0.05]},
                    "hidden_layers": {"choice": [[16], [32, 32]]},
                },
            }
        },
        "metric": "val_loss",
        "max_parallel": max_parallel,
        "early_stopping": {"rule": "median", "grace_epochs": 3, "min_trials": 2},
        "promote_to": "champion",
    }
    response = client.post("/v1/sweeps", json=body)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def wait_sweep(client, sweep_id: str, timeout: float, step=None) -> dict:
    def finished():
        if step is not None:
            step()
        body = client.get(f"/v1/sweeps/{sweep_id}").get_json()
        return body["status"] != "running" and body

    return wait_until(finished, timeout, f"sweep {sweep_id} to end")


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (an end before a start at the same time)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    open_now = most = 0
    for _, change in events:
        open_now += change
        most = max(most, open_now)
    return most


def test_a_random_sweep_on_two_workers(
    postgres_url, redis_url, queue_name, start_worker, api_service
):
    settings = make_settings(postgres_url, redis_url, queue_name)
    client, _ = api_service(settings)
    workers = [start_worker(settings), start_worker(settings)]
    started = time.monotonic()
    sweep = random_sweep(client, epochs=12)
    done = wait_sweep(client, sweep["id"], timeout=400)
    wall = time.monotonic() - started
    logs = "".join(w.output()[-2000:] for w in workers)
    assert done["status"] == "succeeded", (done, logs)

    board = done["leaderboard"]
    assert len(board) == 6 and all(t["status"] == "succeeded" for t in board)
    # Ordered by the metric (val_loss: lowest first).
    values = [t["value"] for t in board]
    assert values == sorted(values)
    # At most max_parallel trials ran at once (from the jobs' own times).
    jobs = [client.get(f"/v1/jobs/{t['job_id']}").get_json() for t in board]
    spans = [
        (datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"]))
        for j in jobs
    ]
    assert max_overlap(spans) <= 2
    # Early termination really acted on running trials, and says when.
    stopped = [t for t in board if t["stopped_early"]]
    assert stopped and done["counts"]["stopped_early"] == len(stopped)
    for trial in stopped:
        assert 3 <= trial["stopped_at_epoch"] < 12 and trial["epoch"] == trial["stopped_at_epoch"]
        assert "median stopping rule" in trial["stop_reason"]
        epochs = client.get(f"/v1/jobs/{trial['job_id']}/metrics").get_json()["epochs"]
        assert len(epochs) == trial["stopped_at_epoch"]
    assert all(t["epoch"] == 12 for t in board if not t["stopped_early"])
    # The winner is promoted and serves predictions by its alias.
    winner = board[0]
    assert not winner["stopped_early"]
    assert done["winner"]["model"] == {"name": "flowers", "version": winner["model_version"]}
    model = client.get("/v1/models/flowers").get_json()
    assert model["aliases"] == {"champion": winner["model_version"]}
    prediction = client.post(
        "/v1/models/flowers/aliases/champion/predict", json={"records": [RECORD]}
    ).get_json()
    assert prediction["model"]["version"] == winner["model_version"]
    assert prediction["predictions"][0]["label"] == "virginica"

    serial = sum((end - start).total_seconds() for start, end in spans)
    sweep_wall = (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds()
    # A later trial starts when an earlier one ends: the wait between is the hand-off.
    ends = sorted(e for _, e in spans)
    gaps = [
        (start - max(e for e in ends if e <= start)).total_seconds()
        for start, _ in sorted(spans)[2:]
        if any(e <= start for e in ends)
    ]
    epochs_run = sum(t["epoch"] for t in board)
    print(
        f"\nsweep: 6 trials, {len(stopped)} stopped early (trials "
        f"{sorted(t['trial'] for t in stopped)} at epochs "
        f"{[t['stopped_at_epoch'] for t in stopped]}), {epochs_run} of {6 * 12} epochs run; "
        f"wall time from the first trial's start to the last one's end {sweep_wall:.1f} s; "
        f"the trials' own run times add up to {serial:.1f} s (run one after another, "
        f"without hand-offs); a trial started {sum(gaps) / max(len(gaps), 1):.1f} s on "
        f"average after the trial whose slot it took ended; {wall:.1f} s from submit to "
        f"the sweep's end as the client saw it; winner trial {winner['trial']} "
        f"(val_loss {winner['value']:.4f}) promoted to champion as version "
        f"{winner['model_version']}"
    )


def test_a_sweep_survives_a_killed_worker(tmp_path, queue_name, start_worker, api_service):
    settings = make_settings(
        f"sqlite:///{tmp_path / 'trainserve.db'}",
        f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        queue_name,
    )
    client, svc = api_service(settings)
    first = start_worker(settings)
    # Long enough trials (the first runs all its epochs: nothing to compare it with yet)
    # that the kill lands inside one; a pool process now starts the next trial at once.
    sweep = random_sweep(client, epochs=60, rows=2000, max_parallel=1)

    def a_running_trial_past_epoch_2():
        board = client.get(f"/v1/sweeps/{sweep['id']}").get_json()["leaderboard"]
        return any(t["status"] == "running" and t["epoch"] >= 2 for t in board)

    wait_until(a_running_trial_past_epoch_2, 120, "a running trial to reach epoch 2")
    first.kill()
    start_worker(settings)
    # The sweeper requeues the dead worker's trial; the sweep goes on to the end.
    done = wait_sweep(
        client,
        sweep["id"],
        timeout=400,
        step=lambda: upkeep_pass(svc.database, svc.settings, svc.publisher),
    )
    assert done["status"] == "succeeded", done
    assert done["counts"]["succeeded"] == 6
    attempts = [
        client.get(f"/v1/jobs/{t['job_id']}").get_json()["attempt"] for t in done["leaderboard"]
    ]
    assert max(attempts) == 2 and attempts.count(2) == 1
    assert (
        client.get("/v1/models/flowers").get_json()["aliases"]["champion"]
        == done["winner"]["model"]["version"]
    )
