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

from tests.integration.conftest import ROOT

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


def test_up_restarts_its_worker_when_it_dies(service):
    import requests

    port, process, log_path = service
    found = subprocess.run(
        ["pgrep", "-P", str(process.pid), "-f", "service.cli worker"],
        capture_output=True,
        text=True,
        check=True,
    )
    worker_pid = int(found.stdout.split()[0])
    os.killpg(worker_pid, signal.SIGKILL)  # the worker and its pool children
    deadline = time.monotonic() + 30
    while "restarting it" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "worker exited with status -9; restarting it" in log_path.read_text()

    base = f"http://127.0.0.1:{port}"
    with open(ROOT / "examples" / "flowers.csv", "rb") as f:
        job = requests.post(
            f"{base}/v1/jobs",
            files={"file": ("flowers.csv", f)},
            data={
                "target": "species",
                "hyperparameters": json.dumps({"recipe": "plain", "epochs": 3}),
            },
            timeout=10,
        ).json()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = requests.get(f"{base}/v1/jobs/{job['id']}", timeout=5).json()["status"]
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert status == "succeeded"
