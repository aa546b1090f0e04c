"""The dashboard in a real browser: Debian's headless Chromium loads /ui from `trainserve up`
after a job has finished, and the job list and its loss curve must be in the page. A
screenshot is kept under tests/artifacts/ (or $TRAINSERVE_ARTIFACTS_DIR).

Also /metrics from the same service: its API runs two gunicorn processes, and the
predict counts must add up over both.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import ROOT, running_service
from tests.integration.helpers import FINISHED, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("TRAINSERVE_CHROMIUM", "/usr/bin/chromium")
EPOCHS = 12
PREDICTS = 7


def artifacts_dir() -> Path:
    path = Path(os.environ.get("TRAINSERVE_ARTIFACTS_DIR") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium(url: str, profile: Path, *args: str) -> str:
    """Run headless Chromium on ``url`` with ``args``; its stdout."""
    assert Path(CHROMIUM).is_file(), (
        f"{CHROMIUM} is missing: `make browser` installs Debian's chromium package "
        "(the dashboard test needs a real browser and is never skipped)"
    )
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            # Chromium's own background traffic is refused on a closed network.
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1400,1300",
            # Run the page's timers and fetches for 8 s of its own clock, then act.
            "--virtual-time-budget=8000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`trainserve up` (auth off, loopback) with one finished job of EPOCHS epochs."""
    home = tmp_path_factory.mktemp("dashboard")
    with running_service(home / "home", home / "up.log") as (port, _process):
        base = f"http://127.0.0.1:{port}"
        with open(ROOT / "examples" / "flowers.csv", "rb") as data:
            response = requests.post(
                f"{base}/v1/jobs",
                files={"file": ("flowers.csv", data, "text/csv")},
                data={
                    "target": "species",
                    "hyperparameters": json.dumps(
                        {
                            "epochs": EPOCHS,
                            "early_stopping_patience": None,
                            "seed": 1,
                        }
                    ),
                },
                timeout=30,
            )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        job = wait_until(
            lambda: (
                (j := requests.get(f"{base}/v1/jobs/{job_id}", timeout=10).json())["status"]
                in FINISHED
                and j
            ),
            180,
            "the job to finish",
        )
        assert job["status"] == "succeeded", job
        yield base, job, home


def test_the_dashboard_shows_the_job_list_and_its_loss_curve(trained, tmp_path):
    base, job, _home = trained
    dom = chromium(f"{base}/ui", tmp_path / "profile", "--dump-dom")

    row = re.search(rf'<tr data-job-id="{job["id"]}"[^>]*>(.*?)</tr>', dom, re.S)
    assert row, dom[:3000]
    assert "succeeded" in row.group(1) and f"{EPOCHS}/{EPOCHS}" in row.group(1)
    assert 'class="selected"' in row.group(0)

    chart = re.search(r'<svg class="chart loss".*?</svg>', dom, re.S)
    assert chart, dom[:3000]
    paths = dict(
        re.findall(
            r'<path class="series[^"]*" data-series="(\w+)"[^>]* d="([^"]+)"', chart.group(0)
        )
    )
    assert set(paths) == {"train_loss", "val_loss"}
    for d in paths.values():
        points = re.findall(r"[ML](-?[\d.]+),(-?[\d.]+)", d)
        assert len(points) == EPOCHS
        xs = [float(x) for x, _ in points]
        assert xs == sorted(xs) and len(set(xs)) == EPOCHS  # one point per epoch, left to right
    # Training lowers the loss: the last point of the training curve sits lower (larger y).
    train = re.findall(r"[ML](-?[\d.]+),(-?[\d.]+)", paths["train_loss"])
    assert float(train[-1][1]) > float(train[0][1])
    assert dom.count("<circle") >= 4 * EPOCHS  # loss and accuracy, train and validation

    # The model version with its final metrics, the predict form prefilled from its schema.
    assert re.search(r"<td>flowers</td><td>1</td><td>\d+\.\d %</td>", dom), dom[:3000]
    assert '"petal_length": 0' in dom and '"scented": true' in dom
    assert re.search(r"<td>flowers</td><td>150</td><td>5</td>", dom)  # the dataset

    screenshot = artifacts_dir() / "dashboard.png"
    screenshot.unlink(missing_ok=True)
    chromium(f"{base}/ui", tmp_path / "profile-shot", f"--screenshot={screenshot}")
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    print(f"dashboard screenshot: {screenshot}")


def test_metrics_add_up_over_the_api_processes(trained):
    base, job, home = trained
    record = {"petal_length": 1.4, "sepal_width": 3.5, "colour": "blue", "scented": False}
    session = requests.Session()
    for _ in range(PREDICTS):
        # A new connection each time, so both gunicorn workers get some.
        response = requests.post(
            f"{base}/v1/models/flowers/predict", json={"records": [record]}, timeout=30
        )
        assert response.status_code == 200, response.text
    for _ in range(4):  # whichever process answers the scrape, it sums them all
        text = session.get(f"{base}/metrics", timeout=10, headers={"Connection": "close"}).text
        samples = dict(
            (name, float(value))
            for name, value in re.findall(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)
        )
        assert samples['trainserve_predict_duration_seconds_count{endpoint="predict"}'] == PREDICTS
        hits = samples["trainserve_model_cache_hits_total"]
        misses = samples["trainserve_model_cache_misses_total"]
        assert hits + misses == PREDICTS and 1 <= misses <= 2  # one load per API process
        assert samples['trainserve_jobs{status="succeeded"}'] == 1
        assert samples["trainserve_queue_depth"] == 0
        assert samples["trainserve_epoch_duration_seconds_count"] == EPOCHS
        assert samples['trainserve_epoch_duration_seconds_bucket{le="+Inf"}'] == EPOCHS
    assert list((home / "home" / "prometheus").glob("*.db")), "no multiprocess samples on disk"


def test_with_keys_required_the_dashboard_asks_for_one(tmp_path):
    env = {"TRAINSERVE_AUTH": "required"}
    with running_service(tmp_path / "home", tmp_path / "up.log", env) as (port, _process):
        # Auth on, but loopback: `up` allows it; the page itself needs no key.
        dom = chromium(f"http://127.0.0.1:{port}/ui", tmp_path / "profile", "--dump-dom")
    panel = re.search(r'<section id="key-panel"[^>]*>', dom)
    assert panel and "hidden" not in panel.group(0), dom[:2000]
    assert "This server needs an API key." in dom
    assert "<tr data-job-id" not in dom
