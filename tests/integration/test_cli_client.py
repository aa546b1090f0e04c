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
from tests.integration.test_readme import service  # noqa: F401 - the `trainserve up` fixture

pytestmark = pytest.mark.integration


def trainserve(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_train_wait_then_predict_then_stream_and_plot(service, tmp_path):  # noqa: F811
    port, _, log_path = service
    url = f"http://127.0.0.1:{port}"
    train = trainserve(
        "train", "examples/flowers.csv", "--target", "species", "--epochs", "8",
        "--learning-rate", "0.01", "--wait", "--url", url,
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
