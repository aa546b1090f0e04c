"""Tables of millions of rows through the whole service, measured as ratios in one run.

For each size (default 1M, 5M and 20M rows of 20 numeric + 2 categorical columns and a
3-class target, generated here) and each deployment (embedded: `trainserve up` on
SQLite; production: `trainserve api` + `trainserve worker` on PostgreSQL + Redis), once
the service has finished starting (its processes idle for a second: ``/healthz``
answers 2-3 s before the start-up's low-priority imports are done, and an upload's
``SCHED_IDLE`` threads would wait for them):

- upload: a streamed CSV body, MB/s, against ``pyarrow.csv.read_csv`` of the same file
  in this process: the best of ``READ_CSV_RUNS`` (3) runs, the first (cold) one kept in
  the JSON as ``read_csv_cold_mb_s`` (target ≥ 0.5× the best);
- peak RssAnon of every process of the service (sampled from /proc every 0.2 s; file
  maps do not count), target ≤ 2 GiB and flat over the sizes;
- training: the job's own samples/s (mean over its epochs) against a raw in-memory
  tensor loop of the same network and batch size in this process (target ≥ 0.8×), and
  the job's wall time;
- CSV batch predict through the API (``Accept: text/csv``) and through
  ``trainserve predict``, rows/s (target ≥ 250k);
- one-row predict p99, idle and while a 2 GB CSV is uploaded (the table's rows sent again
  and again, streamed by a thread of this process) (target ≤ 2×), measured for 10 s each
  by a client process of its own: during an upload sent as a file (Content-Length, as
  curl and ``trainserve upload`` send one), then during one sent as a chunked stream;
  ``p99_window_in_upload`` (``_chunked``) in the JSON says the upload outlasted the
  window;
- at the end, per deployment: each process's peak RssAnon at the largest size over the
  smallest (flat: about 1), and the job's time ratio over the rows ratio (target:
  20× the rows in ≤ 22× the time, so ≤ 1.1).

The service and the raw loop both train with one torch thread (``TRAINSERVE_TORCH_THREADS``
= 1): on a shared machine more threads than free cores slow torch down many times. The
job is the ``plain`` recipe, the same network and optimiser as the raw loop. The load
average is recorded before and after every run: on a shared machine it says how far the
absolute figures are from an idle one's.

    python bench/scale.py --rows 1000000 5000000 20000000 [--deployments embedded production]
        [--phases upload train predict p99]

``--phases`` (default all four) measures only some of them. A phase that is left out
but needed by another is done at the least cost and not reported: without ``train``,
the model that ``predict`` and ``p99`` use is trained (one epoch) on the table's first
100,000 rows, uploaded apart; the table itself is uploaded only for ``upload`` or
``train``. RssAnon is sampled whatever the phases.

Writes a Markdown table to stdout and JSON to bench/scale-results.json (``--results``;
a run of some phases writes to the temporary directory unless told). Nothing is
downloaded. Sizes take disk: about 180 bytes a row of CSV, plus the stored Parquet and
the worker's cache.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
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
    wait_http,
    wait_settled,
)

BATCH = 1024
HIDDEN = [64, 64]
EPOCHS = 2
CONCURRENT_UPLOAD_BYTES = 2 * 10**9
# The table is sent 1 MiB at a time, as a user's curl or `trainserve upload` does.
UPLOAD_BLOCK_BYTES = 1 << 20
PHASES = ("upload", "train", "predict", "p99")
# read_csv runs per file; the upload's reference is the best of them.
READ_CSV_RUNS = 3
# Without the train phase, the model that predict and p99 need is trained on this many
# of the table's first rows (the same network: its predict costs what the full one's do).
MODEL_ONLY_ROWS = 100_000
# The job: the plain recipe, the raw loop's network and batch size.
JOB_HYPERPARAMETERS = {
    "recipe": "plain",
    "early_stopping": False,
    "epochs": EPOCHS,
    "batch_size": BATCH,
    "hidden_layers": HIDDEN,
    "seed": 1,
}


def table_file(data: Path, rows: int) -> Path:
    """``data``/table-<rows>.csv, made first if it is not there."""
    path = data / f"table-{rows}.csv"
    if not path.exists():
        data.mkdir(parents=True, exist_ok=True)
        make_csv(path, rows)
    return path


def make_csv(path: Path, rows: int, seed: int = 0, chunk: int = 1_000_000) -> None:
    """20 numeric + 2 categorical columns and a 3-class label that depends on them."""
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        columns = {f"x{i}": rng.normal(size=n).round(5) for i in range(20)}
        columns["colour"] = rng.choice(np.array(["red", "green", "blue", "grey", "black"]), n)
        columns["shape"] = rng.choice(np.array(["circle", "square", "triangle"]), n)
        score = columns["x0"] + 0.5 * columns["x1"] - columns["x2"] + (columns["colour"] == "red")
        columns["label"] = np.array(["a", "b", "c"])[np.digitize(score, [-0.5, 0.8])]
        table = pa.table(columns)
        if writer is None:
            writer = pacsv.CSVWriter(str(path), table.schema)
        writer.write_table(table)
    writer.close()


def without_label(path: Path, features: Path) -> None:
    """``path`` without its label column, streamed (a 20M-row table is not held)."""
    reader = pacsv.open_csv(path)
    schema = pa.schema([f for f in reader.schema if f.name != "label"])
    with pacsv.CSVWriter(str(features), schema) as writer:
        for batch in reader:
            writer.write_batch(batch.drop_columns(["label"]))


class AnonSampler(threading.Thread):
    """Peak RssAnon (kB) per command line of a set of process groups, sampled."""

    def __init__(self, processes: list[Process]):
        super().__init__(daemon=True)
        self.processes, self.peaks, self.running = processes, {}, True

    def run(self) -> None:
        while self.running:
            for process in self.processes:
                for pid in _descendants(process.popen.pid):
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                        cmd = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
                    except OSError:
                        continue
                    if "RssAnon:" not in status:  # a zombie (exited, not yet reaped)
                        continue
                    anon = int(status.split("RssAnon:")[1].split()[0])
                    name = _role(cmd)
                    self.peaks[name] = max(self.peaks.get(name, 0), anon)
            time.sleep(0.2)

    def stop(self) -> dict[str, float]:
        self.running = False
        self.join()
        return {name: kb / 1024 for name, kb in self.peaks.items()}


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (``up`` starts its children in sessions of
    their own, so a process group would miss them)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _role(cmd: str) -> str:
    words = cmd.split()
    if "worker" in words or "celery" in cmd:
        return "worker"
    if "api" in words or "gunicorn" in cmd:
        return "api"
    if "up" in words:
        return "up"
    return words[0].rsplit("/", 1)[-1] if words else "?"


def raw_loop_samples_per_s(rows: int, width: int) -> float:
    """A raw in-memory tensor loop: randperm per epoch, Adam, the service's default
    network; samples/s of the training passes."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x = torch.randn(rows, width)
    y = torch.randint(0, 3, (rows,))
    layers, last = [], width
    for size in HIDDEN:
        layers += [nn.Linear(last, size), nn.ReLU()]
        last = size
    model = nn.Sequential(*layers, nn.Linear(last, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    order = torch.randperm(rows)
    for i in range(0, rows, BATCH):
        index = order[i : i + BATCH]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x[index]), y[index]).backward()
        optimizer.step()
    return rows / (time.perf_counter() - started)


def upload(
    url: str, path: Path, rows: int | None = None, block: int | None = UPLOAD_BLOCK_BYTES
) -> tuple[dict, float]:
    """Upload ``path`` (only its header and first ``rows`` rows if given); the dataset
    and the seconds it took. The file is sent ``block`` bytes at a time (``None``: as
    requests sends a file, 16 KiB a time)."""
    started = time.perf_counter()
    with open(path, "rb") as f:
        if rows is not None:
            data = _head(f, rows)
        elif block is not None:
            data = _Blocks(f, path.stat().st_size, block)
        else:
            data = f
        response = requests.post(
            f"{url}/v1/datasets",
            params={"name": path.stem},
            data=data,
            headers={"Content-Type": "text/csv"},
            timeout=3600,
        )
    response.raise_for_status()
    return response.json(), time.perf_counter() - started


class _Sized(io.RawIOBase):
    """A request body of ``size`` bytes, its Content-Length (requests asks ``len``)."""

    size = 0

    def __len__(self) -> int:
        return self.size

    def tell(self) -> int:
        return 0  # requests' Content-Length is the length less this

    def readable(self) -> bool:
        return True


class _Blocks(_Sized):
    """A file read ``block`` bytes at a time whatever the size asked: urllib3 asks a
    file body for 16 KiB per send (11,500 sends for the 1M-row table); a user's curl,
    and ``trainserve upload``, send far larger blocks. Its length is the Content-Length."""

    def __init__(self, file, size: int, block: int):
        super().__init__()
        self.file, self.size, self.block = file, size, block

    def read(self, size: int = -1) -> bytes:
        return self.file.read(self.block)


def _head(f, rows: int):
    yield f.readline()
    for _ in range(rows):
        line = f.readline()
        if not line:
            return
        yield line


class RepeatedFile(_Sized):
    """``path``'s header, then its rows again and again up to the end of the row that
    passes ``total`` bytes (whole lines: the rows stay rows across repetitions), 1 MiB at
    a time: a body of known length (its Content-Length, as curl and ``trainserve upload``
    send a file), or, through :attr:`blocks`, a stream of unknown length."""

    def __init__(self, path: Path, total: int):
        super().__init__()
        with open(path, "rb") as f:
            header = len(f.readline())
            rows = f.seek(0, io.SEEK_END) - header
            copies, rest = divmod(total - header, rows)
            if rest:  # the rest of the last row it starts
                f.seek(header + rest - 1)
                rest = f.tell() + len(f.readline()) - header
        self.size = header + copies * rows + rest  # ends at a line end
        self.blocks = self._blocks(path, header)

    def _blocks(self, path: Path, header: int):
        left = self.size
        with open(path, "rb") as f:
            while left > 0:
                if f.tell() == 0 and left < self.size:
                    f.seek(header)  # the rows again, without the header
                block = f.read(min(1 << 20, left))
                if not block:
                    f.seek(0)
                    continue
                left -= len(block)
                yield block

    def read(self, size: int = -1) -> bytes:
        return next(self.blocks, b"")


def upload_big(url: str, path: Path, chunked: bool = False) -> float:
    """Upload ``CONCURRENT_UPLOAD_BYTES`` of rows, streamed: a body of known length, or
    ``chunked`` (Transfer-Encoding: chunked, as a stream of unknown length is sent);
    its seconds."""
    started = time.perf_counter()
    body = RepeatedFile(path, CONCURRENT_UPLOAD_BYTES)
    requests.post(
        f"{url}/v1/datasets",
        params={"name": "big"},
        data=body.blocks if chunked else body,
        headers={"Content-Type": "text/csv"},
        timeout=7200,
    ).raise_for_status()
    return time.perf_counter() - started


ONE_ROW = {
    "records": [{f"x{i}": 0.1 * i for i in range(20)} | {"colour": "red", "shape": "circle"}]
}
# A client process of its own: bench.harness imports no torch, so it starts in ~0.5 s.
P99_CLIENT = (
    "import json, sys; from bench.harness import post_latencies; "
    "print(json.dumps(post_latencies(sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]))))"
)


def one_row_p99(url: str, seconds: float) -> float:
    """The p99 (ms) of one-row predicts one after another on one kept-alive connection
    for ``seconds``, sent by a client process of its own: a client of the service is not
    the process that uploads. (Until 2026-12-01 a thread of this process measured it,
    and shared this process's interpreter lock with the thread sending the 2 GB upload:
    1M rows, embedded, 2.26 / 4.52 ms by a process against 2.47 / 5.03 by the thread,
    alternated in one run; bench/README.md.)"""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            P99_CLIENT,
            f"{url}/v1/models/scale/predict",
            json.dumps(ONE_ROW),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    return float(np.percentile(json.loads(out), 99)) * 1000


def cpu_seconds(processes: list[Process]) -> float:
    """CPU seconds (user + system) used so far by the service's processes and their
    children: on a loaded machine, rows per CPU-second say what an idle core would do."""
    ticks = 0
    for process in processes:
        for pid in _descendants(process.popen.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime, stime, and the cutime, cstime of reaped children: a worker that exits
            # and is replaced keeps its share (summing live processes alone went backwards).
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(
    url: str,
    path: Path,
    rows: int,
    size_mb: float,
    home: Path,
    processes: list[Process],
    phases: set[str],
) -> dict:
    result: dict = {}
    if phases & {"upload", "train"}:
        dataset, seconds = upload(url, path)
        assert dataset["n_rows"] == rows, dataset
        result["upload_mb_s"] = size_mb / seconds
    if "train" in phases:
        epochs = train(url, dataset["id"], JOB_HYPERPARAMETERS, result)
        result["train_samples_s"] = statistics.fmean(e["samples_per_s"] for e in epochs)
        result["val_accuracy"] = epochs[-1]["val_accuracy"]
    elif phases & {"predict", "p99"}:
        small, _ = upload(url, path, rows=MODEL_ONLY_ROWS)
        train(url, small["id"], JOB_HYPERPARAMETERS | {"epochs": 1}, {})
    if "predict" in phases:
        predict(url, path, rows, home, processes, result)
    if "p99" in phases:
        result["p99_idle_ms"] = one_row_p99(url, 10)
        # A 2 GB file (Content-Length), then a 2 GB stream (chunked): the server reads
        # the first straight from its socket, the second through gunicorn's reader.
        for suffix, chunked in (("", False), ("_chunked", True)):
            big: list[float] = []
            uploading = threading.Thread(
                target=lambda big=big, chunked=chunked: big.append(upload_big(url, path, chunked))
            )
            uploading.start()
            time.sleep(1)
            result[f"p99_upload{suffix}_ms"] = one_row_p99(url, 10)
            # Every predict of that window ran beside the upload, or the figure would
            # mix in idle ones.
            result[f"p99_window_in_upload{suffix}"] = uploading.is_alive()
            uploading.join()
            result[f"big_upload{suffix}_s"] = big[0] if big else None
    return result


def train(url: str, dataset_id: str, hyperparameters: dict, result: dict) -> list[dict]:
    """Train the model "scale" on the dataset; its epochs' metrics. The job's wall
    time goes into ``result["job_s"]``."""
    job = requests.post(
        f"{url}/v1/jobs",
        json={
            "dataset_id": dataset_id,
            "target": "label",
            "model_name": "scale",
            "hyperparameters": hyperparameters,
        },
        timeout=60,
    ).json()
    started = time.perf_counter()
    while True:
        state = requests.get(f"{url}/v1/jobs/{job['id']}", timeout=60).json()
        if state["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1)
    result["job_s"] = time.perf_counter() - started
    if state["status"] != "succeeded":
        raise RuntimeError(f"the job {state['status']}: {state.get('error')}")
    return requests.get(f"{url}/v1/jobs/{job['id']}/metrics", timeout=60).json()["epochs"]


def predict(
    url: str, path: Path, rows: int, home: Path, processes: list[Process], result: dict
) -> None:
    """Every row of the table (without its label) through the API and the CLI."""
    features = path.with_suffix(".features.csv")
    if not features.exists():
        without_label(path, features)
    t, cpu = time.perf_counter(), cpu_seconds(processes)
    with (
        open(features, "rb") as f,
        requests.post(
            f"{url}/v1/models/scale/predict",
            data=f,
            headers={"Content-Type": "text/csv", "Accept": "text/csv"},
            stream=True,
            timeout=3600,
        ) as answer,
    ):
        answer.raise_for_status()
        for _ in answer.iter_content(1 << 20):
            pass
    result["api_predict_rows_s"] = rows / (time.perf_counter() - t)
    result["api_predict_rows_per_cpu_s"] = rows / (cpu_seconds(processes) - cpu)
    t = time.perf_counter()
    subprocess.run(
        [
            str(BIN / "trainserve"),
            "predict",
            "scale",
            str(features),
            "-o",
            str(home / "p.csv"),
            "--url",
            url,
        ],
        check=True,
        capture_output=True,
    )
    result["cli_predict_rows_s"] = rows / (time.perf_counter() - t)


def run(deployment: str, rows: int, path: Path, size_mb: float, phases: set[str]) -> dict:
    home = Path(tempfile.mkdtemp(prefix="trainserve-scale-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TRAINSERVE_HOME": str(home),
        "TRAINSERVE_AUTH": "off",
        "TRAINSERVE_TORCH_THREADS": "1",
        # The whole features file in one batch predict, at every size.
        "TRAINSERVE_MAX_BATCH_PREDICT_BYTES": str(64 * 1024**3),
        "TRAINSERVE_MAX_BATCH_PREDICT_ROWS": str(10**9),
    }
    processes: list[Process] = []
    with scratch_database() if deployment == "production" else _nothing() as database:
        if deployment == "production":
            env |= {
                "TRAINSERVE_DATABASE_URL": database,
                "TRAINSERVE_BROKER_URL": REDIS_URL,
                "TRAINSERVE_QUEUE": f"scale-{port}",
            }
            subprocess.run([str(BIN / "trainserve"), "db", "upgrade"], env=env, check=True)
            processes.append(
                Process(
                    [str(BIN / "trainserve"), "api", "--port", str(port)], env, home / "api.log"
                )
            )
            processes.append(Process([str(BIN / "trainserve"), "worker"], env, home / "worker.log"))
        else:
            processes.append(
                Process(
                    [str(BIN / "trainserve"), "up", "--home", str(home), "--port", str(port)],
                    env,
                    home / "up.log",
                )
            )
        try:
            wait_http(f"{url}/healthz", 120, processes[0])
            wait_settled(lambda: cpu_seconds(processes))
            sampler = AnonSampler(processes)
            sampler.start()
            result = measure(url, path, rows, size_mb, home, processes, phases)
            result["rss_anon_mb"] = sampler.stop()
        finally:
            for process in processes:
                process.stop()
            shutil.rmtree(home, ignore_errors=True)  # GBs of stored tables and caches
    return result


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000, 20_000_000])
    parser.add_argument("--deployments", nargs="+", default=["embedded", "production"])
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "trainserve-scale"
    )
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=PHASES,
        default=list(PHASES),
        help="what to measure (default all); see the module's docstring",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="where the JSON goes (default bench/scale-results.json for a run of every "
        "phase; a run of some phases goes to the temporary directory, so that it does not "
        "replace the committed figures)",
    )
    args = parser.parse_args()
    phases = set(args.phases)
    results_path = args.results or (
        Path(__file__).with_name("scale-results.json")
        if phases == set(PHASES)
        else Path(tempfile.gettempdir()) / f"scale-results-{'-'.join(sorted(phases))}.json"
    )
    print(f"results: {results_path}", file=sys.stderr)
    args.data.mkdir(parents=True, exist_ok=True)
    results = []
    # The raw loop's first run in a process costs about 1.7x the CPU of later ones (torch's
    # first allocations and kernel choices): warm it, so that the first row's ratio is not
    # flattered by a slow reference.
    raw_loop_samples_per_s(200_000, 20 + 5 + 3)
    for rows in args.rows:
        path = table_file(args.data, rows)
        size_mb = path.stat().st_size / 1e6
        read_csv_mb_s = read_csv_cold_mb_s = None
        if "upload" in phases:
            read_csv_cold_mb_s, read_csv_mb_s = read_csv_speeds(path, size_mb)
        for deployment in args.deployments:
            load_before = os.getloadavg()[0]
            raw = raw_loop_samples_per_s(1_000_000, 20 + 5 + 3) if "train" in phases else None
            try:
                r = run(deployment, rows, path, size_mb, phases)
            except Exception as exc:  # one failed run must not lose the others' figures
                print(f"{deployment} at {rows:,} rows failed: {exc!r}", file=sys.stderr)
                continue
            r |= {
                "load_before": load_before,
                "load_after": os.getloadavg()[0],
                "rows": rows,
                "deployment": deployment,
                "csv_mb": size_mb,
                "read_csv_mb_s": read_csv_mb_s,
                "read_csv_cold_mb_s": read_csv_cold_mb_s,
                "raw_samples_s": raw,
                "phases": [p for p in PHASES if p in phases],
            }
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            # Written after every run, so that a run cut short keeps what it measured.
            results_path.write_text(json.dumps(results, indent=2))
    print(table(results))
    print()
    print(growth(results))


def read_csv_speeds(path: Path, size_mb: float, runs: int = READ_CSV_RUNS) -> tuple[float, float]:
    """``pyarrow.csv.read_csv`` of ``path`` ``runs`` times in this process: the first
    (cold) run's MB/s and the best run's, the upload's reference (the first run of a
    process pays Arrow's first allocations and thread pool start: ~150 against ~250-300
    MB/s warm on the 1M-row table, which flattered the upload's ratio)."""
    speeds = []
    for _ in range(runs):
        t = time.perf_counter()
        pacsv.read_csv(path)
        speeds.append(size_mb / (time.perf_counter() - t))
    return speeds[0], max(speeds)


def table(results: list[dict]) -> str:
    """The Markdown table of bench/README.md; "—" where a phase was not measured."""
    lines = [
        "| rows | deployment | load before / after | CSV MB | upload MB/s (× read_csv) | "
        "peak RssAnon MB api / worker / up | train samples/s (× raw loop) | job s | "
        "batch predict rows/s API / CLI (API rows per service CPU-second) | "
        "one-row p99 ms idle / during a 2 GB upload: a file / a chunked stream |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        rss = r["rss_anon_mb"]
        lines.append(
            f"| {r['rows']:,} | {r['deployment']} | {r['load_before']:.1f} / "
            f"{r['load_after']:.1f} | {r['csv_mb']:,.0f} | {_upload_cell(r)} | "
            f"{' / '.join(_mb(rss.get(role)) for role in ('api', 'worker', 'up'))} | "
            f"{_train_cell(r)} | {_predict_cell(r)} | {_p99_cell(r)} |"
        )
    return "\n".join(lines)


def _mb(value: float | None) -> str:
    """A peak in MB, or "—" for a process the deployment does not run (production: no `up`)."""
    return "—" if value is None else f"{value:,.0f}"


def _upload_cell(r: dict) -> str:
    if r.get("upload_mb_s") is None or r.get("read_csv_mb_s") is None:
        return "—"
    return f"{r['upload_mb_s']:.0f} ({r['upload_mb_s'] / r['read_csv_mb_s']:.2f}×)"


def _train_cell(r: dict) -> str:
    if r.get("train_samples_s") is None:
        return "— | —"
    return (
        f"{r['train_samples_s']:,.0f} ({r['train_samples_s'] / r['raw_samples_s']:.2f}×) | "
        f"{r['job_s']:.0f}"
    )


def _predict_cell(r: dict) -> str:
    if r.get("api_predict_rows_s") is None:
        return "—"
    return (
        f"{r['api_predict_rows_s']:,.0f} / {r['cli_predict_rows_s']:,.0f} "
        f"({r.get('api_predict_rows_per_cpu_s', 0):,.0f})"
    )


def _p99_cell(r: dict) -> str:
    if r.get("p99_idle_ms") is None:
        return "—"
    cells = [f"{r['p99_idle_ms']:.1f}"]
    for suffix in ("", "_chunked"):
        if r.get(f"p99_upload{suffix}_ms") is None:
            continue  # a run from before the chunked window was measured
        # "!" marks a window the upload did not outlast (some of its predicts were idle).
        mark = "" if r.get(f"p99_window_in_upload{suffix}", True) else " !"
        during = r[f"p99_upload{suffix}_ms"]
        cells.append(f"{during:.1f} ({during / r['p99_idle_ms']:.2f}×){mark}")
    return " / ".join(cells)


def growth(results: list[dict]) -> str:
    """Per deployment, the largest size against the smallest: peak RssAnon of each
    process (flat: about 1×) and the job's time over the rows (target ≤ 1.1)."""
    lines = []
    for deployment in dict.fromkeys(r["deployment"] for r in results):
        runs = sorted(
            (r for r in results if r["deployment"] == deployment), key=lambda r: r["rows"]
        )
        small, large = runs[0], runs[-1]
        if large is small:
            continue
        rows = large["rows"] / small["rows"]
        memory = ", ".join(
            f"{name} {large['rss_anon_mb'][name] / mb:.2f}×"
            for name, mb in small["rss_anon_mb"].items()
            if name in large["rss_anon_mb"] and name in ("api", "worker", "up")
        )
        line = (
            f"- {deployment}, {large['rows']:,} rows against {small['rows']:,} ({rows:.0f}× "
            f"the rows): peak RssAnon {memory}"
        )
        if "train_samples_s" in large and "train_samples_s" in small:
            time_ratio = large["job_s"] / small["job_s"]
            line += (
                f"; the job took {time_ratio:.1f}× the time "
                f"({time_ratio / rows:.2f} of proportional)"
            )
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
