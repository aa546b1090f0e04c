"""Batch predict of a large CSV file through `trainserve api` (gunicorn), with its memory.

    python bench/batch_predict.py [ROWS]      # default 1,000,000

Trains a small model (4 features: two numeric with missing values, a categorical, a
boolean; MLP 64-64) on a scratch SQLite database in-process, writes ROWS feature rows to
a CSV file, starts `trainserve api --workers 1` on that database, and posts the file
with Accept: text/csv (requests streams the file from disk; the answer is read a block
at a time and only its lines are counted). It prints the time, rows/s, the answer's
size, and the API worker's resident memory: before, peak during the request (VmHWM)
and the growth. Not part of the tests.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import BIN, Process, free_port, versions, wait_http  # noqa: E402
from service.app import create_app  # noqa: E402
from service.config import Settings  # noqa: E402
from service.db.migrate import upgrade  # noqa: E402
from service.usecases.training import run_training  # noqa: E402


class _Publisher:
    def publish(self, job_id: str, *, gpu: bool = False) -> None:
        pass

    def ping(self) -> None:
        pass


def table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows).round(4), rng.normal(size=rows).round(4)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    flag = rng.random(rows) < 0.5
    score = x1 + 0.5 * x2 + np.where(colour == "red", 1.5, 0.0) + np.where(flag, 0.5, 0.0)
    frame = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "colour": colour,
            "flag": np.where(flag, "true", "false"),
            "species": np.select(
                [score < -0.3, score < 1.2], ["setosa", "versicolor"], "virginica"
            ),
        }
    )
    frame.loc[::9, "x2"] = np.nan
    frame.loc[::13, "colour"] = None
    return frame


def train(url: str) -> None:
    settings = Settings.from_env({}, database_url=url, broker_url="memory://", auth="off")
    app = create_app(settings, publisher=_Publisher())
    client = app.test_client()
    data = table(2_000, seed=0).to_csv(index=False, na_rep="NA")
    dataset = client.post("/v1/datasets", data=data, content_type="text/csv").get_json()
    job = client.post(
        "/v1/jobs",
        json={
            "dataset_id": dataset["id"],
            "target": "species",
            "model_name": "bench",
            "hyperparameters": {"epochs": 5, "seed": 0},
        },
    ).get_json()
    svc = app.extensions["trainserve"]
    assert run_training(svc.database, svc.settings, job["id"], "bench") == "succeeded"
    svc.close()


def write_rows(path: Path, rows: int) -> None:
    with path.open("w") as out:
        for start in range(0, rows, 100_000):
            part = table(min(100_000, rows - start), seed=start + 1).drop(columns="species")
            part.to_csv(out, index=False, header=start == 0, na_rep="NA")


def memory_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}


def worker_pid(master: int) -> int:
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def main(rows: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="trainserve-batch-"))
    url = f"sqlite:///{work / 'bench.db'}"
    upgrade(url)
    train(url)
    path = work / "rows.csv"
    write_rows(path, rows)
    port = free_port()
    env = {**os.environ, "TRAINSERVE_DATABASE_URL": url, "TRAINSERVE_AUTH": "off"}
    env["TRAINSERVE_BROKER_URL"] = f"sqla+sqlite:///{work / 'broker.db'}"
    argv = [str(BIN / "trainserve"), "api", "--port", str(port), "--workers", "1"]
    api = Process(argv, env, work / "api.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", process=api)
        predict = f"{base}/v1/models/bench/predict"
        headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
        warm = "x1,x2,colour,flag\n1,2,red,true\n"
        requests.post(predict, data=warm, headers=headers, timeout=60).raise_for_status()
        worker = worker_pid(api.popen.pid)
        before = memory_kib(worker)
        started = time.perf_counter()
        lines = size = 0
        with path.open("rb") as body:
            response = requests.post(predict, data=body, headers=headers, stream=True, timeout=600)
            response.raise_for_status()
            for block in response.iter_content(1 << 16):
                lines += block.count(b"\n")
                size += len(block)
        seconds = time.perf_counter() - started
        after = memory_kib(worker)
    finally:
        api.stop()
    print(
        json.dumps(
            {
                "versions": versions(),
                "rows": lines - 1,
                "input_mb": round(path.stat().st_size / 1e6, 1),
                "output_mb": round(size / 1e6, 1),
                "seconds": round(seconds, 2),
                "rows_per_s": round((lines - 1) / seconds),
                "worker_rss_before_mib": round(before["VmRSS"] / 1024, 1),
                "worker_peak_mib": round(after["VmHWM"] / 1024, 1),
                "worker_peak_growth_mib": round((after["VmHWM"] - before["VmHWM"]) / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
