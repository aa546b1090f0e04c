"""An upload's CPU, thread by thread, and when each thread ran.

``python bench/upload_threads.py [--rows N] [--deployment embedded|production]
[--repeat K] [--timeline]`` starts a service of this checkout (as ``upload_cpu.py`` does,
and once it has finished starting), uploads ``scale.py``'s table of N rows K times (1
MiB at a time, as ``scale.py``), and prints for each upload its MB/s and the service's
CPU seconds per thread name, user and system (``/proc/PID/task/TID/stat``, sampled
every 50 ms so that the threads an upload starts and ends count too). With
``--timeline``, also how many cores the service kept busy in each 100
ms of the upload, and which threads (``python``: the processes' main threads).

The service runs with ``bench/threadnames`` first on its PYTHONPATH, whose
sitecustomize gives each OS thread its Python thread's name (Python does not before
3.14): ``csv-chunks`` (reads the body), ``csv-parse_*`` (Arrow's parse), ``ingest-checks_0``
(the checks and summaries), ``ingest-writes_0`` (the Parquet write, each part's hash),
``blob-parts`` (stores the parts), ``long-request_*`` (the request: the first block's
types, gathering the parsed rows).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale import UPLOAD_BLOCK_BYTES, _Blocks, table_file  # noqa: E402
from bench.upload_cpu import service  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def _descendants(pids: list[int]) -> set[int]:
    found, todo = set(pids), list(pids)
    while todo:
        pid = todo.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _threads(pids: set[int]) -> dict[tuple[int, str], tuple[int, int]]:
    """(thread id, name) -> (user, system) ticks so far, of every thread of ``pids``."""
    seen = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            seen[(int(tid), name)] = (int(fields[11]), int(fields[12]))
    return seen


class _Sampler(threading.Thread):
    def __init__(self, pids: set[int]):
        super().__init__(daemon=True)
        self.pids, self.stop = pids, threading.Event()
        self.first = _threads(pids)
        self.last = dict(self.first)
        self.steps: list[tuple[float, dict[str, float]]] = []

    def run(self) -> None:
        previous, due = dict(self.first), time.perf_counter() + 0.1
        while not self.stop.wait(0.05):
            now = _threads(self.pids)
            self.last |= now
            if time.perf_counter() >= due:
                used: collections.Counter = collections.Counter()
                for key, (user, system) in now.items():
                    before = previous.get(key, self.first.get(key, (0, 0)))
                    used[key[1]] += (user + system - sum(before)) / TICK
                self.steps.append((time.perf_counter(), dict(used)))
                previous, due = now, due + 0.1

    def totals(self) -> dict[str, tuple[float, float]]:
        self.last |= _threads(self.pids)
        user: collections.Counter = collections.Counter()
        system: collections.Counter = collections.Counter()
        for key, (u, s) in self.last.items():
            u0, s0 = self.first.get(key, (0, 0))
            user[key[1]] += (u - u0) / TICK
            system[key[1]] += (s - s0) / TICK
        return {name: (user[name], system[name]) for name in user}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--deployment", choices=("embedded", "production"), default="embedded")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeline", action="store_true")
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "trainserve-scale"
    )
    args = parser.parse_args()
    path = table_file(args.data, args.rows)
    size = path.stat().st_size
    names = {"PYTHONPATH": f"{ROOT / 'bench' / 'threadnames'}{os.pathsep}{ROOT}"}
    with service(str(ROOT), args.deployment, names) as (url, processes, _database):
        pids = _descendants([pid for process in processes for pid in process.pids()])
        for run in range(args.repeat):
            sampler = _Sampler(pids)
            sampler.start()
            started, sending = time.perf_counter(), time.thread_time()
            with open(path, "rb") as f:
                response = requests.post(
                    f"{url}/v1/datasets",
                    data=_Blocks(f, size, UPLOAD_BLOCK_BYTES),
                    headers={"Content-Type": "text/csv"},
                    timeout=3600,
                )
            seconds, sending = time.perf_counter() - started, time.thread_time() - sending
            time.sleep(0.15)
            sampler.stop.set()
            sampler.join()
            response.raise_for_status()
            totals = sampler.totals()
            service_cpu = sum(u + s for u, s in totals.values())
            print(
                f"upload {run}: {size / 1e6 / seconds:.1f} MB/s ({seconds:.2f} s); service "
                f"{service_cpu:.2f} CPU-s; this client's sending {sending:.2f} CPU-s"
            )
            for name, (user, system) in sorted(totals.items(), key=lambda t: -sum(t[1])):
                if user + system >= 0.01:
                    print(f"    {name:18s} user {user:5.2f}  sys {system:5.2f}")
            if args.timeline:
                for at, used in sampler.steps:
                    if started - 0.05 <= at <= started + seconds + 0.15:
                        busy = ", ".join(
                            f"{n}:{v:.2f}"
                            for n, v in sorted(used.items(), key=lambda t: -t[1])
                            if v >= 0.01
                        )
                        cores = sum(used.values()) / 0.1
                        print(f"    {at - started:5.2f} s  cores {cores:4.2f}  {busy}")
            requests.delete(f"{url}/v1/datasets/{response.json()['id']}", timeout=600)


if __name__ == "__main__":
    main()
