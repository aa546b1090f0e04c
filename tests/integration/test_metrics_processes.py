"""/metrics from `trainserve up`: its API runs two gunicorn processes, and the predict
counts (and the job and epoch counts read from the database) must add up over both."""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.integration.conftest import ROOT, running_service
from tests.integration.helpers import FINISHED, wait_until

pytestmark = pytest.mark.integration

EPOCHS = 12
PREDICTS = 7


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
