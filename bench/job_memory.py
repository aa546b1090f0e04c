"""The worker's side of a training job at several table sizes, in child processes: peak
anonymous memory and CPU time per phase (issue 12).

For each size, the table of ``bench/scale.py`` (20 numeric + 2 categorical columns, a
3-class label) is stored as the service stores an upload (``ingest``, into a Parquet
file; kept between runs under ``--scratch``), then a fresh child process does what a
worker's job does: encode the file into the float32 cache (statistics pass + encoding),
memory-map it and train 2 epochs of the ``plain`` recipe (batch 1024, one torch
thread). The parent samples the child's RssAnon (``/proc/PID/status``, every 20 ms; file
maps such as the cache do not count). The child reports its CPU seconds per phase (CPU
time, unlike wall time, hardly moves with the load of a shared machine).

    python bench/job_memory.py --rows 1000000 4000000 [--scratch /tmp/job-memory]
        [--data /tmp/trainserve-scale]

At the end: the largest size's peak RssAnon and CPU seconds over the smallest's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale import JOB_HYPERPARAMETERS, make_csv  # noqa: E402

CHILD = """
import json, sys, time
import torch
torch.set_num_threads(1)
from service.ml.hyperparameters import TrainingConfig
from service.ml.pipeline import encode_file, load_encoded

parquet, out, types = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = TrainingConfig.from_json({config})
report = {{}}
cpu = time.process_time()
encode_file(parquet, "label", types, out, validation_fraction=config.validation_fraction,
            seed=config.seed, scaling=config.scaling)
report["encode_cpu_s"] = time.process_time() - cpu
data = load_encoded(out)
trainer = data.trainer(config)
cpu = time.process_time()
report["samples_per_s"] = [record.samples_per_s for record in trainer.fit()]
report["train_cpu_s"] = time.process_time() - cpu
report["val_accuracy"] = trainer.validation_step()[1]
print("REPORT", json.dumps(report))
"""


def stored_table(scratch: Path, rows: int, data: Path | None = None) -> tuple[Path, dict[str, str]]:
    """The size's table as the service stores it (Parquet) and its column types; the CSV
    is ``data/table-<rows>.csv`` if there is one (``scale.py --data``), else made here."""
    from service.ml.ingest import Limits, ingest

    parquet = scratch / f"table-{rows}.parquet"
    types_file = parquet.with_suffix(".types.json")
    if not types_file.exists():
        given = data / f"table-{rows}.csv" if data else None
        csv = given if given and given.exists() else scratch / f"table-{rows}.csv"
        if csv != given:
            make_csv(csv, rows)
        with open(csv, "rb") as source, open(parquet, "wb") as sink:
            stored = ingest(source, sink, fmt="csv", limits=Limits(rows, 100))
        if csv != given:
            csv.unlink()
        types_file.write_text(json.dumps(stored.types))
    types = json.loads(types_file.read_text())
    types.pop("label")
    return parquet, types


def peak_anon_kb(pid: int, samples: list[int], done: threading.Event) -> None:
    while not done.is_set():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return
        if "RssAnon:" in status:
            samples.append(int(status.split("RssAnon:")[1].split()[0]))
        time.sleep(0.02)


def job(parquet: Path, types: dict[str, str], out: Path) -> dict:
    code = CHILD.format(config=repr(JOB_HYPERPARAMETERS))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(parquet), str(out), json.dumps(types)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    samples: list[int] = []
    done = threading.Event()
    sampler = threading.Thread(target=peak_anon_kb, args=(child.pid, samples, done))
    sampler.start()
    started = time.perf_counter()
    stdout, _ = child.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if child.returncode:
        raise RuntimeError(f"the child failed ({child.returncode})")
    report = json.loads(stdout.split("REPORT", 1)[1])
    report["peak_anon_mb"] = max(samples) / 1024
    report["wall_s"] = wall
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/job-memory"))
    parser.add_argument(
        "--data", type=Path, help="where table-<rows>.csv may already be (scale.py --data)"
    )
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    results = {}
    for rows in args.rows:
        parquet, types = stored_table(args.scratch, rows, args.data)
        out = args.scratch / f"encoded-{rows}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        load = os.getloadavg()[0]
        report = job(parquet, types, out)
        subprocess.run(["rm", "-rf", str(out)], check=True)
        report["load"] = load
        results[rows] = report
        print(
            f"{rows:>11,} rows: peak RssAnon {report['peak_anon_mb']:,.0f} MB; encode "
            f"{report['encode_cpu_s']:.1f} CPU-s ({report['encode_cpu_s'] / rows * 1e6:.2f} "
            f"per M rows); 2 epochs {report['train_cpu_s']:.1f} CPU-s "
            f"({report['train_cpu_s'] / rows * 1e6:.2f} per M rows), samples/s "
            f"{', '.join(f'{s:,.0f}' for s in report['samples_per_s'])}; val accuracy "
            f"{report['val_accuracy']:.4f}; wall {report['wall_s']:.0f} s; load {load:.1f}",
            flush=True,
        )
    small, large = results[min(results)], results[max(results)]
    factor = max(results) / min(results)
    print(
        f"{factor:g}x the rows: peak RssAnon {large['peak_anon_mb'] / small['peak_anon_mb']:.2f}x, "
        f"encode CPU {large['encode_cpu_s'] / small['encode_cpu_s']:.2f}x, training CPU "
        f"{large['train_cpu_s'] / small['train_cpu_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
