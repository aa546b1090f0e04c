"""The README's curl session, run as printed against `trainserve up` (the embedded mode
`make run` starts), and a clean stop on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.integration.conftest import ROOT, running_service

pytestmark = pytest.mark.integration


def readme_session() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- curl-session.*?```bash\n(.*?)```\s*<!-- /curl-session -->", text, re.S)
    assert block, "README.md has no curl-session block"
    return block.group(1)


def test_the_readme_curl_session_works_as_printed(service, tmp_path):
    port, process, log_path = service
    script = readme_session().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The outputs come one JSON document after another; read them in order.
    decoder, text, documents = json.JSONDecoder(), result.stdout, []
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
    dataset, submitted, job, metrics, prediction = documents
    columns = {c["name"]: c for c in dataset["columns"]}
    assert columns["colour"]["type"] == "categorical" and columns["colour"]["missing"] > 0
    assert columns["sepal_width"]["missing"] > 0 and columns["scented"]["type"] == "boolean"
    assert submitted["status"] == "queued"
    assert job["status"] == "succeeded" and job["model"] == {"name": "flowers", "version": 1}
    epochs = metrics["epochs"]
    # Up to 30 epochs; early stopping (on by default) may end it sooner.
    assert [e["epoch"] for e in epochs] == list(range(1, len(epochs) + 1))
    assert 10 <= len(epochs) <= 30
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] / 2
    assert prediction["classes"] == ["setosa", "versicolor", "virginica"]
    assert [p["label"] for p in prediction["predictions"]] == ["virginica", "setosa"]
    for row in prediction["predictions"]:
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)


def test_ctrl_c_stops_the_api_and_the_worker(service):
    port, process, log_path = service
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=40) == 0, log_path.read_text()[-3000:]
    log = log_path.read_text()
    assert "stopped" in log
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    # No child of `up` is left behind.
    leftover = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def test_up_restarts_its_worker_when_it_dies(tmp_path):
    """SIGKILL to the worker of `trainserve up` in the middle of a job: the supervisor
    sees it exit, releases the job's lease at once (the lease is 60 s here) and hands
    the work to its standby worker; the job resumes from its checkpoint within seconds
    (docs/guarantees.md quotes the figure)."""

    log_path = tmp_path / "up.log"
    # One torch thread: two on this 2-core machine, shared with the API, crawl under load.
    env = {"TRAINSERVE_TORCH_THREADS": "1"}
    with running_service(tmp_path / "home", log_path, env) as (port, _process):
        running_again = _kill_the_worker_mid_job(port, tmp_path, log_path)
    print(f"\n`trainserve up` worker killed mid-job → attempt 2 running in {running_again:.1f} s")
    assert running_again <= 10


def _kill_the_worker_mid_job(port, tmp_path, log_path) -> float:
    import sqlite3

    import requests

    from tests.support.data import mixed_csv

    base = f"http://127.0.0.1:{port}"
    dataset = requests.post(
        f"{base}/v1/datasets", data=mixed_csv(600), headers={"Content-Type": "text/csv"},
        timeout=30,
    ).json()  # fmt: skip
    hyperparameters = {
        "recipe": "plain",
        "epochs": 30,
        "early_stopping_patience": None,
        "batch_size": 8,
        "seed": 5,
    }
    job_id = requests.post(
        f"{base}/v1/jobs",
        json={"dataset_id": dataset["id"], "target": "species", "model_name": "m",
              "hyperparameters": hyperparameters},
        timeout=30,
    ).json()["id"]  # fmt: skip

    def job() -> dict:
        return requests.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()

    deadline = time.monotonic() + 90
    while job()["epoch"] < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    with sqlite3.connect(tmp_path / "home" / "trainserve.db") as db:
        (worker,) = db.execute("SELECT worker FROM jobs WHERE id = ?", (job_id,)).fetchone()
    node_pid = int(worker.split("@")[0].removeprefix("trainserve-"))  # trainserve-<pid>@host/…
    os.killpg(node_pid, signal.SIGKILL)  # the worker and its pool children
    killed = time.monotonic()
    while not (job()["attempt"] == 2 and job()["status"] == "running"):
        assert time.monotonic() - killed < 30, log_path.read_text()[-3000:]
        time.sleep(0.1)
    running_again = time.monotonic() - killed
    deadline = time.monotonic() + 90
    while job()["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
    output = log_path.read_text()
    assert "worker exited with status -9; restarting it" in output
    assert "trainserve up saw it exit" in output
    assert job()["status"] == "succeeded", output[-3000:]
    epochs = requests.get(f"{base}/v1/jobs/{job_id}/metrics", timeout=10).json()["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(1, 31))
    return running_again
