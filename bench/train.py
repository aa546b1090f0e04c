"""Training throughput: trainserve against a raw PyTorch loop and a DataLoader loop.

The reference jobs: 100k×20 and 1M×20 numeric rows, 3 classes, MLP 64-64, Adam, batch
256, 10 epochs, 20% validation split evaluated after every epoch, no early stopping.

- raw: the data as float32 tensors in memory, one ``randperm`` per epoch and slicing,
  validation in batches of 8192 under ``inference_mode`` — the floor; "raw, fused Adam"
  is the same loop with ``Adam(fused=True)``, which trainserve uses;
- dataloader: the same with ``DataLoader(TensorDataset, shuffle=True)``, as most
  tutorials write it;
- trainserve: ``trainserve worker`` (one job at a time, torch threads = cores) and
  ``trainserve api`` on PostgreSQL + Redis; the table is uploaded as CSV first (not
  timed), then the job is POSTed and polled until it succeeded. Its samples/s is the
  mean of the epochs' own ``samples_per_s``; its wall time is POST → succeeded, which
  also covers reading the stored table, preprocessing, the per-epoch checkpoints and
  metrics, the evaluation and storing the model.

Then POST → running latency: small jobs submitted one at a time to the idle worker,
from sending the POST to the job's ``started_at`` (the worker's claim).

Usage: python bench/train.py [--sizes 100000,1000000] [--epochs 10] [--latency-jobs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import requests
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # noqa: E402
    BIN,
    REDIS_URL,
    ROOT,
    Process,
    free_port,
    scratch_database,
    versions,
    wait_http,
)
from service.ml.network import Architecture, build_mlp  # noqa: E402

N_FEATURES = 20
BATCH = 256
HIDDEN = (64, 64)


def table(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, N_FEATURES)).round(3)
    score = x[:, :5].sum(axis=1) - x[:, 5:10].sum(axis=1)
    y = np.where(score > 1, 0, np.where(score < -1, 1, 2))
    return x, y


def csv_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    import pandas as pd

    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(N_FEATURES)])
    frame["y"] = np.array(["high", "low", "mid"])[y]
    return frame.to_csv(index=False, float_format="%.3f").encode()


def split(x: np.ndarray, y: np.ndarray):
    """80/20, standardised with the training part's statistics, as float32 tensors."""
    order = np.random.default_rng(1).permutation(len(y))
    cut = int(len(y) * 0.8)
    train, val = order[:cut], order[cut:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)

    def tensors(index):
        return (
            torch.from_numpy(((x[index] - mean) / std).astype(np.float32)),
            torch.from_numpy(y[index].astype(np.int64)),
        )

    return tensors(train), tensors(val)


def network() -> nn.Module:
    return build_mlp(Architecture(N_FEATURES, 3, HIDDEN, "relu", 0.0))


def validate(model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(y_val), 8192):
            logits = model(x_val[start : start + 8192])
            correct += int((logits.argmax(1) == y_val[start : start + 8192]).sum())
    model.train()
    return correct / len(y_val)


def raw_loop(data, epochs: int, fused: bool = False) -> dict:
    """In-memory tensors: a ``randperm`` per epoch, batches by slicing it."""
    (x, y), _ = data

    def batches():
        order = torch.randperm(len(y))
        for i in range(0, len(y), BATCH):
            index = order[i : i + BATCH]
            yield x[index], y[index]

    return _fit(data, epochs, batches, fused=fused)


def dataloader_loop(data, epochs: int) -> dict:
    """The tutorial loop: ``DataLoader(TensorDataset, shuffle=True)``."""
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(*data[0]), batch_size=BATCH, shuffle=True)
    return _fit(data, epochs, lambda: loader)


def _fit(data, epochs: int, batches, *, fused: bool = False) -> dict:
    """Adam on the reference network over ``batches()`` each epoch, validating after each;
    samples/s counts the training passes only, as the service's ``samples_per_s`` does."""
    (_, y), (x_val, y_val) = data
    torch.manual_seed(0)
    model = network()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    loss_fn = nn.CrossEntropyLoss()
    train_time = 0.0
    started = time.perf_counter()
    for _ in range(epochs):
        t = time.perf_counter()
        for xb, yb in batches():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        train_time += time.perf_counter() - t
        accuracy = validate(model, x_val, y_val)
    wall = time.perf_counter() - started
    return {"samples_per_s": len(y) * epochs / train_time, "wall_s": wall, "val_acc": accuracy}


class Service:
    """trainserve api + worker on a scratch PostgreSQL database and Redis."""

    def __init__(self, db_url: str, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "TRAINSERVE_DATABASE_URL": db_url,
            "TRAINSERVE_BROKER_URL": REDIS_URL,
            "TRAINSERVE_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
            "TRAINSERVE_AUTH": "off",
            "TRAINSERVE_MAX_UPLOAD_BYTES": str(1 << 30),
            "TRAINSERVE_LOG_LEVEL": os.environ.get("TRAINSERVE_LOG_LEVEL", "WARNING"),
            "PYTHONPATH": str(ROOT),
        }
        cli = [str(BIN / "trainserve")]
        Process(cli + ["db", "upgrade"], env, workdir / "upgrade.log").popen.wait()
        self.worker = Process(cli + ["worker"], env, workdir / "worker.log")
        self.api = Process(
            cli + ["api", "--port", str(self.port), "--workers", "1"], env, workdir / "api.log"
        )
        wait_http(f"{self.url}/healthz", process=self.api)

    def upload(self, content: bytes, name: str) -> str:
        response = requests.post(
            f"{self.url}/v1/datasets?name={name}",
            data=content,
            headers={"Content-Type": "text/csv"},
            timeout=600,
        )
        response.raise_for_status()
        return response.json()["id"]

    def train(self, dataset_id: str, epochs: int, poll: float = 0.5) -> dict:
        """POST the job and wait for it. The wall time is POST → the job's ``finished_at``
        (one clock, this machine's), so the polling interval does not count; polling is
        slow so that it takes no CPU from the worker."""
        body = {
            "dataset_id": dataset_id,
            "target": "y",
            "model_name": f"bench-{dataset_id[:8]}",
            "hyperparameters": {
                "recipe": "plain",  # the explicit plain-MLP configuration of issue 13
                "hidden_layers": list(HIDDEN),
                "batch_size": BATCH,
                "epochs": epochs,
                "early_stopping_patience": None,
                "seed": 0,
            },
        }
        posted_at = time.time()
        response = requests.post(f"{self.url}/v1/jobs", json=body, timeout=30)
        response.raise_for_status()
        job_id = response.json()["id"]
        while True:
            job = requests.get(f"{self.url}/v1/jobs/{job_id}", timeout=30).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(poll)
        wall = datetime.fromisoformat(job["finished_at"]).timestamp() - posted_at
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
        epochs_seen = requests.get(f"{self.url}/v1/jobs/{job_id}/metrics", timeout=30).json()
        rates = [e["samples_per_s"] for e in epochs_seen["epochs"]]
        return {
            "samples_per_s": statistics.fmean(rates),
            "wall_s": wall,
            "val_acc": epochs_seen["epochs"][-1]["val_accuracy"],
            "job": job,
            "posted_at": posted_at,
        }

    def stop(self) -> None:
        self.api.stop()
        self.worker.stop()


def _median(runs: list[dict]) -> dict:
    """Median samples/s and wall time of repeated runs (the last run's other fields)."""
    return {
        **runs[-1],
        "samples_per_s": statistics.median(r["samples_per_s"] for r in runs),
        "wall_s": statistics.median(r["wall_s"] for r in runs),
    }


def queue_latency(service: Service, dataset_id: str, jobs: int) -> list[float]:
    """From sending the POST to the job's ``started_at`` (the claim), for small jobs sent one
    at a time to the idle worker; one clock, this machine's."""
    latencies = []
    for _ in range(jobs):
        result = service.train(dataset_id, epochs=1, poll=0.02)
        running = datetime.fromisoformat(result["job"]["started_at"]).timestamp()
        latencies.append((running - result["posted_at"]) * 1000)
        time.sleep(1.0)  # the worker's pool replaces the child that ran the job
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--latency-jobs", type=int, default=20)
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs of each loop, alternated; medians reported"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    torch.set_num_threads(os.cpu_count() or 1)

    rows = {}
    with tempfile.TemporaryDirectory(prefix="ts-bench-") as tmp, scratch_database() as db_url:
        service = Service(db_url, Path(tmp))
        try:
            small = service.upload(csv_bytes(*table(2000, seed=5)), "latency")
            for n in sizes:
                x, y = table(n)
                t = time.perf_counter()
                dataset_id = service.upload(csv_bytes(x, y), f"rows-{n}")
                print(f"{n} rows: upload {time.perf_counter() - t:.1f} s", flush=True)
                data = split(x, y)
                runs: dict[str, list[dict]] = {}
                for repeat in range(args.repeats):  # alternated: the machine's drift is shared
                    runs.setdefault("raw", []).append(raw_loop(data, args.epochs))
                    runs.setdefault("raw, fused Adam", []).append(
                        raw_loop(data, args.epochs, fused=True)
                    )
                    if repeat == 0:  # the slow one, once
                        runs["dataloader"] = [dataloader_loop(data, args.epochs)]
                    runs.setdefault("trainserve", []).append(service.train(dataset_id, args.epochs))
                results = {name: _median(found) for name, found in runs.items()}
                for name, r in results.items():
                    print(
                        f"{n} rows {name:15s}: {r['samples_per_s']:9,.0f} samples/s "
                        f"wall {r['wall_s']:6.1f} s val acc {r['val_acc']:.3f}",
                        flush=True,
                    )
                rows[n] = results
            latencies = queue_latency(service, small, args.latency_jobs)
        finally:
            service.stop()

    print()
    print(f"{time.strftime('%Y-%m-%d')}; {versions()}; MLP 64-64, batch {BATCH}, "
          f"{args.epochs} epochs, 80/20 split, median of {args.repeats} alternated runs")
    print("| rows | loop | samples/s | wall s | vs raw (samples/s) | vs raw (wall) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for n, results in rows.items():
        raw = results["raw"]
        for name, r in results.items():
            print(
                f"| {n:,} | {name} | {r['samples_per_s']:,.0f} | {r['wall_s']:.1f} | "
                f"{r['samples_per_s'] / raw['samples_per_s']:.2f} | "
                f"{r['wall_s'] / raw['wall_s']:.2f} |"
            )
    if len(rows) >= 2:
        small_n, big_n = sorted(rows)[0], sorted(rows)[-1]
        ratio = rows[big_n]["trainserve"]["wall_s"] / rows[small_n]["trainserve"]["wall_s"]
        print(f"trainserve: {big_n // small_n}x rows cost {ratio:.2f}x time (POST → succeeded)")
    print(
        f"POST → running over {len(latencies)} jobs: median {statistics.median(latencies):.0f} ms, "
        f"max {max(latencies):.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
