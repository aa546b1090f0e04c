"""The client commands as a user runs them, against `trainserve up` (gunicorn's threaded
workers, a real Celery worker): train --wait with its progress, predict to a CSV, and the
event stream and plot over HTTP."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pytest
import requests

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration


def trainserve(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_train_wait_then_predict_then_stream_and_plot(service, tmp_path):
    port, _, log_path = service
    url = f"http://127.0.0.1:{port}"
    train = trainserve(
        "train", "examples/flowers.csv", "--target", "species", "--recipe", "plain",
        "--epochs", "8", "--learning-rate", "0.01", "--wait", "--url", url,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr + log_path.read_text()[-3000:]
    assert train.stdout == "model flowers version 1\n"
    epochs = [line for line in train.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == [f"{n}/8" for n in range(1, 9)]
    assert "succeeded after 8 epochs; the model keeps epoch " in train.stderr

    predict = trainserve(
        "predict", "flowers", "examples/flowers.csv", "-o", str(tmp_path / "out.csv"),
        "--url", url,
    )  # fmt: skip
    assert predict.returncode == 0, predict.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert len(rows) == 150
    assert list(rows[0]) == ["label", "p_setosa", "p_versicolor", "p_virginica"]
    for row in rows:
        assert sum(float(v) for k, v in row.items() if k != "label") == pytest.approx(1.0)

    job_id = requests.get(f"{url}/v1/jobs", timeout=10).json()[0]["id"]
    with requests.get(f"{url}/v1/jobs/{job_id}/events", stream=True, timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        ids = [line[4:] for line in stream.iter_lines(decode_unicode=True) if line[:4] == "id: "]
    assert ids == [str(n) for n in range(1, 9)] + ["8:succeeded"]
    plot = requests.get(f"{url}/v1/jobs/{job_id}/plot?format=png", timeout=30)
    assert plot.headers["Content-Type"] == "image/png" and plot.content[:4] == b"\x89PNG"

    failed = trainserve("metrics", "no-such-job", "--url", url)
    assert failed.returncode == 1
    assert failed.stderr == "trainserve: 404 Not Found: no job with id 'no-such-job'\n"


def test_sweep_wait_promotes_the_winner_and_alias_moves_it(service, tmp_path):
    port, _, log_path = service
    url = f"http://127.0.0.1:{port}"
    sweep = trainserve(
        "sweep", "examples/flowers.csv", "--target", "species",
        "--grid", "learning_rate=1e-3,3e-2", "--grid", "hidden_layers=16,16x2",
        "--set", "epochs=4", "--max-parallel", "2", "--promote-to", "champion",
        "--wait", "--url", url,
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr + log_path.read_text()[-3000:]
    lines = sweep.stdout.splitlines()
    assert lines[0].split()[:3] == ["TRIAL", "STATUS", "VAL_LOSS"]
    board = [line.split() for line in lines[1:5]]
    assert sorted(int(row[0]) for row in board) == [0, 1, 2, 3]
    losses = [float(row[2]) for row in board]
    assert losses == sorted(losses)  # best first
    winner = lines[-1]
    assert winner.startswith("winner: model flowers version ")
    assert winner.endswith("(now flowers@champion)")
    version = int(winner.split()[4])
    finished = [line for line in sweep.stderr.splitlines() if line.startswith("trial ")]
    assert len(finished) == 4 and "wall time" in sweep.stderr

    champion = requests.get(f"{url}/v1/models/flowers/aliases/champion", timeout=10).json()
    assert champion["version"] == version
    moved = trainserve("alias", "flowers", "champion", "1", "--url", url)
    assert moved.returncode == 0 and moved.stdout == "flowers@champion -> version 1\n"
    assert requests.get(f"{url}/v1/models/flowers/aliases/champion", timeout=10).json()[
        "version"
    ] == 1
    listed = trainserve("sweeps", "--url", url)
    assert listed.returncode == 0 and "succeeded" in listed.stdout.splitlines()[1]
    gone = trainserve("alias", "flowers", "nope", "--delete", "--url", url)
    assert gone.returncode == 1 and gone.stderr.startswith("trainserve: 404 Not Found")
