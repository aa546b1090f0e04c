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
import sys
from pathlib import Path

import pytest
import requests

from tests.integration.browser import Page, run_chromium
from tests.integration.conftest import ROOT, running_service
from tests.integration.helpers import FINISHED, wait_until

pytestmark = pytest.mark.integration

EPOCHS = 12
PREDICTS = 7


def artifacts_dir() -> Path:
    path = Path(os.environ.get("TRAINSERVE_ARTIFACTS_DIR") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


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
                            "recipe": "plain",
                            "epochs": EPOCHS,
                            "early_stopping_patience": None,
                            "learning_rate": 0.005,  # a curve that visibly falls in 12 epochs
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
    dom = run_chromium(f"{base}/ui", tmp_path / "profile", "--dump-dom")

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
    run_chromium(f"{base}/ui", tmp_path / "profile-shot", f"--screenshot={screenshot}")
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    print(f"dashboard screenshot: {screenshot}")


def test_swagger_ui_renders_at_docs_without_any_other_host(trained, tmp_path):
    base, _job, _home = trained
    dom = run_chromium(f"{base}/docs", tmp_path / "profile", "--dump-dom")
    paths = set(re.findall(r'data-path="([^"]+)"', dom))  # one per operation Swagger UI drew
    assert {"/v1/jobs", "/v1/jobs/{job_id}/metrics", "/metrics"} <= paths


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


@pytest.fixture
def page(tmp_path):
    """A Chromium tab driven over the DevTools pipe."""
    page = Page(tmp_path / "profile")
    yield page
    page.close()


def test_the_prediction_form_answers_with_probabilities_or_names_the_bad_field(trained, page):
    base, _job, _home = trained
    page.goto(f"{base}/ui")
    assert page.wait_for("document.querySelector('#predict-model').value") == "flowers/1"
    prefilled = json.loads(page.js("document.querySelector('#predict-records').value"))
    assert set(prefilled[0]) == {"petal_length", "sepal_width", "colour", "scented"}

    rows = [
        {"petal_length": 1.4, "sepal_width": 3.5, "colour": "blue", "scented": False},
        {"petal_length": 6.0, "sepal_width": 3.0},  # missing features are imputed
    ]
    page.js(f"document.querySelector('#predict-records').value = {json.dumps(json.dumps(rows))}")
    page.js("document.querySelector('#predict-form').requestSubmit()")
    page.wait_for("document.querySelectorAll('#predictions tbody tr').length === 2")
    header = page.js("[...document.querySelectorAll('#predictions th')].map(th => th.textContent)")
    assert header == ["Row", "Label", "p(setosa)", "p(versicolor)", "p(virginica)"]
    cells = page.js(
        "[...document.querySelectorAll('#predictions tbody tr')]"
        ".map(tr => [...tr.children].map(td => td.textContent))"
    )
    for row in cells:
        assert row[1] in ("setosa", "versicolor", "virginica")
        assert sum(float(p) for p in row[2:]) == pytest.approx(1.0, abs=1e-3)

    bad = json.dumps(json.dumps([{"petal_length": "tall"}]))
    page.js(f"document.querySelector('#predict-records').value = {bad}")
    page.js("document.querySelector('#predict-form').requestSubmit()")
    error = page.wait_for(
        "!document.querySelector('#predict-error').hidden"
        " && document.querySelector('#predict-error').textContent"
    )
    assert "petal_length" in error


def test_with_keys_required_the_dashboard_asks_for_one_and_uses_it(tmp_path, page):
    home = tmp_path / "home"
    env = {"TRAINSERVE_AUTH": "required"}
    with running_service(home, tmp_path / "up.log", env) as (port, _process):
        created = subprocess.run(
            [sys.executable, "-m", "service.cli", "keys", "create", "--tenant", "acme"]
            + ["--home", str(home)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        key = created.stdout.strip().splitlines()[-1]
        base = f"http://127.0.0.1:{port}"
        with open(ROOT / "examples" / "flowers.csv", "rb") as data:
            uploaded = requests.post(
                f"{base}/v1/datasets",
                files={"file": ("acme-flowers.csv", data, "text/csv")},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
        assert uploaded.status_code == 201, uploaded.text

        # Loopback with keys required: the page loads, the API refuses it, it asks.
        page.goto(f"{base}/ui")
        page.wait_for("!document.querySelector('#key-panel').hidden")
        assert "needs an API key" in page.js("document.querySelector('#notice').textContent")

        page.js("document.querySelector('#key-input').value = 'ts_not-a-key'")
        page.js("document.querySelector('#key-form').requestSubmit()")
        page.wait_for("document.querySelector('#notice').textContent.includes('refused')")

        page.js(f"document.querySelector('#key-input').value = {json.dumps(key)}")
        page.js("document.querySelector('#key-form').requestSubmit()")
        names = page.wait_for(
            "[...document.querySelectorAll('#datasets tbody td:first-child')]"
            ".map(td => td.textContent).join() || null"
        )
        assert names == "acme-flowers"
        assert page.js("document.querySelector('#key-panel').hidden") is True
        assert page.js("sessionStorage.getItem('trainserve.apiKey')") == key
        assert page.js("localStorage.length") == 0
