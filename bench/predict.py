"""Predict latency and throughput: trainserve against the Flask floor, side by side.

Trains the reference model (20 numeric features, 3 classes, MLP 64-64) into a scratch
PostgreSQL database, then starts three servers on the same cores:

- floor: ``bench/floor_app.py`` under gunicorn, 2 sync workers, one torch thread each;
- trainserve: ``trainserve api --workers 2`` with API keys on (PostgreSQL, Redis broker),
  the production configuration, with its default worker class (hybrid: a sync main
  thread, 8 threads for long requests) and with ``--worker-class sync``.

The default server also serves the default recipe's models, one of each shape ``folds:
"auto"`` gives: the same 3,000-row table (``tabular_bagged4``: from 2,000 to 5,000 rows
the recipe bags 4 members), a 6,000-row one (``tabular``: one network) and a 1,500-row
one (``tabular_bagged``: 3 members), so the one-row p99 of the default recipe's models is
printed beside the plain MLP's (issue 13: at most 1.5x). ``--in-process`` times only the
networks' ``predict_records``, without servers.

wrk (one thread, N connections) loads them alternately with the same request: one row
and 1,000 rows of JSON, ROUNDS rounds each. Prints req/s, rows/s, p50/p99 and the ratios
trainserve / floor (median of the rounds).

``--targets`` loads only some of them; ``--baseline ROOT`` also starts the default server
from another checkout (another worktree, before a change) on the same database and
alternates its targets with this checkout's, so a change is measured side by side in
one run.

Usage: python bench/predict.py [--duration S] [--connections N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # noqa: E402
    BIN,
    REDIS_URL,
    ROOT,
    Process,
    cpu_seconds,
    free_port,
    scratch_database,
    versions,
    wait_http,
    wrk,
)

N_FEATURES = 20
# trainserve as `trainserve api` runs it by default, and with sync workers (no threads).
SERVERS = {"trainserve": "hybrid", "trainserve sync": "sync"}
# The default recipe's models on the default (hybrid) server, by the size of the table
# (folds "auto"): one network from 5,000 labelled rows, 4 bagged members from 2,000 to
# 5,000 (its costliest network), 3 under 2,000.
TABULAR = "trainserve tabular"
BAGGED4 = "trainserve tabular bagged 4"
BAGGED = "trainserve tabular bagged"
RECIPE_MODELS = {TABULAR: "tabular", BAGGED4: "tabular_bagged4", BAGGED: "tabular_bagged"}
# ``--targets``' short names.
TARGETS = {
    "floor": "floor",
    "trainserve": "trainserve",
    "sync": "trainserve sync",
    "tabular": TABULAR,
    "bagged4": BAGGED4,
    "bagged": BAGGED,
}
BASELINE = "baseline "  # the prefix of --baseline's targets
FEATURES = [f"f{i}" for i in range(N_FEATURES)]


def reference_table(rows: int, seed: int = 0) -> bytes:
    """20 numeric features, 3 classes decided by two linear scores."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, N_FEATURES)).round(4)
    score = x[:, :5].sum(axis=1) - x[:, 5:10].sum(axis=1)
    y = np.where(score > 1, "high", np.where(score < -1, "low", "mid"))
    lines = [",".join([*FEATURES, "y"])]
    lines += [",".join([*map(str, row), label]) for row, label in zip(x.tolist(), y, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def train_reference(env: dict[str, str], workdir: Path) -> dict:
    """Train the reference model in-process; write the floor's spec; return it."""
    os.environ.update(env)
    from service.app import create_app
    from service.config import Settings
    from service.db.migrate import upgrade
    from service.usecases import models
    from service.usecases.training import run_training

    settings = Settings.from_env(auth="off")
    upgrade(settings.database_url)

    class NoBroker:
        def publish(self, job_id: str, *, gpu: bool = False) -> None:
            pass

    app = create_app(settings, publisher=NoBroker())
    client = app.test_client()
    dataset = client.post(
        "/v1/datasets?name=reference", data=reference_table(3000), content_type="text/csv"
    ).get_json()
    svc = app.extensions["trainserve"]

    def train(dataset_id: str, model_name: str, hyperparameters: dict) -> None:
        job = client.post(
            "/v1/jobs",
            json={
                "dataset_id": dataset_id,
                "target": "y",
                "model_name": model_name,
                "hyperparameters": hyperparameters,
            },
        ).get_json()
        assert run_training(svc.database, settings, job["id"], "bench") == "succeeded"

    train(dataset["id"], "reference", {"recipe": "plain", "hidden_layers": [64, 64], "epochs": 5})
    # The same table with the default (tabular) recipe: 3,000 rows, so 4 bagged members
    # (folds "auto"); few epochs: the shape, not the fit, sets the latency.
    train(dataset["id"], "tabular_bagged4", {"epochs": 3})
    # From 5,000 rows one network; under 2,000, 3 members.
    for name, rows in (("tabular", 6000), ("tabular_bagged", 1500)):
        table = client.post(
            f"/v1/datasets?name=reference-{rows}",
            data=reference_table(rows),
            content_type="text/csv",
        ).get_json()
        train(table["id"], name, {"epochs": 3})
    found = models.get_version(svc.database, "default", "reference", None)
    bundle = models._load(svc.database, found)
    from safetensors.torch import save_file

    weights = workdir / "floor.safetensors"
    save_file({k: v.contiguous() for k, v in bundle.network.state_dict().items()}, weights)
    columns = {c.name: c for c in bundle.encoder.columns}
    spec = {
        "weights": str(weights),
        "features": FEATURES,
        "mean": [columns[f].mean for f in FEATURES],
        "std": [columns[f].std for f in FEATURES],
        "classes": [str(c) for c in bundle.classes],
        "architecture": bundle.arch.to_json(),
    }
    (workdir / "floor.json").write_text(json.dumps(spec))
    svc.database.engine.dispose()
    return spec


def body(rows: int, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, N_FEATURES)).round(4).tolist()
    return json.dumps({"records": [dict(zip(FEATURES, r, strict=True)) for r in x]}).encode()


def create_key(env: dict[str, str]) -> str:
    out = subprocess.run(
        [str(BIN / "trainserve"), "keys", "create", "--tenant", "default", "--name", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rows", default="1,1000", help="rows per request, comma-separated (default 1,1000)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write py-spy profiles (collapsed stacks and top functions) of one trainserve "
        "worker during the first round to this folder",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="only time one-row predict of the plain and the default recipe's model "
        "in this process (no servers): the part of a request the recipe changes",
    )
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="what wrk loads, comma-separated among " + ", ".join(TARGETS) + " (default all; "
        "trainserve, the plain MLP on the default server, is the recipe models' reference)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout (e.g. a worktree at the commit before a change): its default "
        "server also serves the chosen trainserve targets, named 'baseline ...', alternated "
        "with this checkout's",
    )
    args = parser.parse_args()
    args.sizes = [int(n) for n in args.rows.split(",")]
    chosen = args.targets.split(",")
    unknown = sorted(set(chosen) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose among {sorted(TARGETS)}")
    args.targets = [TARGETS[t] for t in chosen]
    if args.in_process:
        return in_process()

    with tempfile.TemporaryDirectory(prefix="ts-bench-") as tmp, scratch_database() as db_url:
        workdir = Path(tmp)
        env = {
            **os.environ,
            "TRAINSERVE_DATABASE_URL": db_url,
            "TRAINSERVE_BROKER_URL": REDIS_URL,
            "TRAINSERVE_AUTH": "required",
            "TRAINSERVE_LOG_LEVEL": "WARNING",
            "FLOOR_SPEC": str(workdir / "floor.json"),
            "PYTHONPATH": str(ROOT),
        }
        print("training the reference model ...", flush=True)
        train_reference(env, workdir)
        key = create_key(env)

        floor_port = free_port()
        floor = Process(
            [
                str(BIN / "gunicorn"),
                "-w",
                str(args.workers),
                "-b",
                f"127.0.0.1:{floor_port}",
                "--chdir",
                str(ROOT / "bench"),
                "floor_app:app",
            ],
            env,
            workdir / "floor.log",
        )
        servers = {"floor": (floor, floor_port)}
        roots = {"": ROOT}
        if args.baseline is not None:
            roots[BASELINE] = args.baseline.resolve()
        for prefix, root in roots.items():
            for name, worker_class in SERVERS.items():
                if prefix and worker_class != "hybrid":
                    continue  # the baseline: the default server only
                port = free_port()
                argv = [str(BIN / "trainserve"), "api", "--port", str(port)]
                argv += ["--workers", str(args.workers), "--worker-class", worker_class]
                log = workdir / f"{prefix.strip() or 'this'}-{worker_class}.log"
                server_env = {**env, "PYTHONPATH": str(root)}
                servers[prefix + name] = (Process(argv, server_env, log), port)
        try:
            targets = {}
            processes = {}
            for name, (process, port) in servers.items():
                if name == "floor":
                    wait_http(f"http://127.0.0.1:{port}/", process=process)
                    found = {name: f"http://127.0.0.1:{port}/predict"}
                else:
                    wait_http(f"http://127.0.0.1:{port}/healthz", process=process)
                    found = {name: f"http://127.0.0.1:{port}/v1/models/reference/predict"}
                    if name.endswith("trainserve"):  # the default recipe's models, same server
                        prefix = name.removesuffix("trainserve")
                        for target, model in RECIPE_MODELS.items():
                            found[prefix + target] = (
                                f"http://127.0.0.1:{port}/v1/models/{model}/predict"
                            )
                for target, url in found.items():
                    if target.removeprefix(BASELINE) in args.targets:
                        headers = {} if name == "floor" else {"Authorization": f"Bearer {key}"}
                        targets[target] = (url, headers)
                        processes[target] = process
            results = run(targets, args, workdir, processes)
        finally:
            for process, _ in servers.values():
                process.stop()
    report(results, args)
    return 0


def in_process(calls: int = 3000, rounds: int = 5) -> int:
    """One-row ``predict_records`` of the plain MLP and of the default recipe's networks
    (one network, 3 bagged members), trained on the reference table, alternated per round;
    the tabular ones also through the network's own forward (``folded`` off: the path
    before ``service/ml/folded.py``, still the one for batches over its row limit).
    Prints the median over the rounds of each round's median time, and its ratio to the
    plain MLP's: in one process, which the machine's other load disturbs far less than
    a server's p99."""
    import dataclasses
    import io

    import pandas as pd
    import torch

    from service.api.jobs.schemas import HyperparametersSchema
    from service.ml.pipeline import prepare, train_bundle
    from service.ml.training import TrainingConfig

    torch.set_num_threads(1)
    types = {f: "numeric" for f in FEATURES}
    bundles = {}
    # The default recipe is one network from 5,000 rows, 4 bagged members from 2,000,
    # 3 under 2,000.
    for name, rows, knobs in (
        ("plain", 2000, {"recipe": "plain", "epochs": 3}),
        ("tabular", 6000, {"epochs": 3}),
        ("tabular bagged 4", 3000, {"epochs": 3}),
        ("tabular bagged", 1500, {"epochs": 3}),
    ):
        frame = pd.read_csv(io.BytesIO(reference_table(rows)))
        config = TrainingConfig.from_json(HyperparametersSchema().load({**knobs, "seed": 0}))
        data = prepare(
            frame,
            "y",
            types,
            validation_fraction=0.2,
            seed=0,
            scaling=config.scaling,
            folds=config.folds if config.network == "tabular" else 0,
        )
        bundles[name], _ = train_bundle(data, config)
    for name in ("tabular", "tabular bagged 4", "tabular bagged"):
        unfolded = dataclasses.replace(bundles[name])
        unfolded.folded = None  # the network's own forward
        bundles[f"{name}, network forward"] = unfolded
    record = json.loads(body(1))["records"]
    timings: dict[str, list[float]] = {name: [] for name in bundles}
    for _ in range(rounds):
        for name, bundle in bundles.items():
            seconds = []
            for _ in range(calls):
                started = time.perf_counter()
                bundle.predict_records(record, max_columns=100, max_cell_chars=100)
                seconds.append(time.perf_counter() - started)
            timings[name].append(1000 * statistics.median(seconds))
    plain = statistics.median(timings["plain"])
    print(f"one-row predict_records, {calls} calls x {rounds} rounds alternating, medians")
    print("| model | ms per call | ÷ plain |")
    print("| --- | ---: | ---: |")
    for name, runs in timings.items():
        median = statistics.median(runs)
        print(f"| {name} | {median:.3f} | {median / plain:.2f} |")
    return 0


def run(targets, args, workdir: Path, processes: dict[str, Process]) -> dict:
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for rows in args.sizes:
        payload = body(rows)
        for url, headers in targets.values():  # warm both: first requests load models
            wrk(url, payload, {"Content-Type": "application/json", **headers},
                duration=2, connections=args.connections, workdir=workdir)
        for round_ in range(args.rounds):
            for name, (url, headers) in targets.items():
                spy = None
                if args.profile and name == "trainserve" and round_ == 0:
                    spy = profile(
                        processes[name], args.profile / f"trainserve-{rows}row", args
                    )
                pids = processes[name].pids()
                cpu = cpu_seconds(pids)
                found = wrk(
                    url,
                    payload,
                    {"Content-Type": "application/json", **headers},
                    duration=args.duration,
                    connections=args.connections,
                    workdir=workdir,
                )
                # The servers' CPU time per request: what a request costs, which the
                # other processes of a busy machine disturb less than req/s and p99.
                found["cpu_ms"] = (
                    1000 * (cpu_seconds(pids) - cpu) / max(1.0, found["rps"] * args.duration)
                )
                if spy is not None:
                    spy.wait()
                    stem = args.profile / f"trainserve-{rows}row"
                    stem.with_suffix(".top.txt").write_text(top_functions(stem.with_suffix(".txt")))
                if found["non2xx"] or found["socket_errors"]:
                    raise RuntimeError(f"{name} answered errors: {found}")
                results.setdefault((name, rows), []).append(found)
                print(
                    f"round {round_ + 1} {name:15s} {rows:5d} rows: {found['rps']:8.0f} req/s "
                    f"p50 {found['p50']:6.2f} ms p99 {found['p99']:6.2f} ms "
                    f"server CPU {found['cpu_ms']:.3f} ms/request",
                    flush=True,
                )
                time.sleep(0.5)
    return results


def profile(server: Process, stem: Path, args) -> subprocess.Popen:
    """py-spy on the last gunicorn worker (the master is the first pid) while wrk runs:
    collapsed stacks in ``stem``.txt (flamegraph.pl or speedscope read them)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    worker = server.pids()[-1]
    return subprocess.Popen(
        [
            str(BIN / "py-spy"), "record", "--pid", str(worker), "--duration",
            str(max(1, round(args.duration) - 1)), "--format", "raw",
            "--output", f"{stem}.txt", "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def top_functions(collapsed: Path, n: int = 40) -> str:
    """The functions of py-spy's collapsed stacks by share of samples: inclusive (on the
    stack) and self (the innermost frame), one function (name and file) per row."""
    total = 0
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        # "function (path/file.py:line)": one row per function, whatever the line.
        frames = [frame.rsplit(":", 1)[0] + ")" for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
    rows = sorted(inclusive, key=inclusive.get, reverse=True)[:n]
    lines = [f"{total} samples; % inclusive, % self, function"]
    lines += [
        f"{100 * inclusive[f] / total:5.1f} {100 * own.get(f, 0) / total:5.1f}  {f}" for f in rows
    ]
    lines.append("")
    lines.append("by self time:")
    lines += [
        f"{100 * own[f] / total:5.1f}  {f}"
        for f in sorted(own, key=own.get, reverse=True)[:n]
    ]
    return "\n".join(lines) + "\n"


def report(results, args) -> None:
    def med(name, rows, key):
        return statistics.median(r[key] for r in results[(name, rows)])

    print()
    print(f"{time.strftime('%Y-%m-%d')}; {versions()}; wrk -t1 -c{args.connections}, "
          f"{args.duration:.0f} s x {args.rounds} rounds alternating, medians")
    print("| rows/request | server | req/s | rows/s | p50 ms | p99 ms | server CPU ms/request |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    names = list(dict.fromkeys(name for name, _ in results))
    prefixes = ["", BASELINE] if args.baseline is not None else [""]
    for rows in args.sizes:
        for name in names:
            rps = med(name, rows, "rps")
            print(f"| {rows} | {name} | {rps:,.0f} | {rps * rows:,.0f} | "
                  f"{med(name, rows, 'p50'):.2f} | {med(name, rows, 'p99'):.2f} | "
                  f"{med(name, rows, 'cpu_ms'):.3f} |")
    for rows in args.sizes:
        for prefix in prefixes:
            plain = prefix + "trainserve"
            for target in (prefix + t for t in RECIPE_MODELS):
                if (target, rows) not in results or (plain, rows) not in results:
                    continue
                p99 = med(target, rows, "p99") / med(plain, rows, "p99")
                cpu = med(target, rows, "cpu_ms") / med(plain, rows, "cpu_ms")
                rounds = [
                    mine["p99"] / reference["p99"]
                    for mine, reference in zip(
                        results[(target, rows)], results[(plain, rows)], strict=True
                    )
                ]
                print(
                    f"{rows} row(s): {target} p99 / plain MLP p99 = {p99:.2f} (per round "
                    f"{', '.join(f'{r:.2f}' for r in rounds)}); "
                    f"server CPU per request / plain MLP's = {cpu:.2f}"
                )
        if "floor" not in names:
            continue
        for name in names[1:]:
            ratio = med(name, rows, "rps") / med("floor", rows, "rps")
            p99 = med(name, rows, "p99") / med("floor", rows, "p99")
            cpu = med(name, rows, "cpu_ms") / med("floor", rows, "cpu_ms")
            print(f"{rows} row(s), {name}: throughput / floor = {ratio:.2f}; "
                  f"p99 / floor = {p99:.2f}; server CPU per request / floor = {cpu:.2f}")


if __name__ == "__main__":
    sys.exit(main())
