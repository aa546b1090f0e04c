"""An upload's CPU through the whole service, two code trees side by side.

``scale.py`` gives an upload's MB/s against ``read_csv``'s; on a shared machine both move
with the load (``read_csv`` uses every free core). CPU seconds move less. This starts one
service per code tree (the same deployment: ``embedded`` is ``trainserve up`` on SQLite,
``production`` is ``trainserve api`` on a scratch PostgreSQL database), then uploads the
table to each in turn, ``--repeat`` times, and prints per upload: MB/s, ``read_csv``'s
MB/s just before, the CPU seconds of the service's processes, those of the
PostgreSQL backends serving its database (``pg_stat_activity``; where parts are stored)
and this client's own (sending the body: on loopback the sender's system calls carry
part of the receiving kernel's work too). Each dataset is deleted after its upload.

    python bench/upload_cpu.py before=/path/to/old/tree after=. --rows 1000000 \\
        [--deployment production] [--repeat 3] [--env after:VAR=VALUE] [--block before=0]

The same tree may run under two names with different ``--env`` (a variable for that
name's service only) or ``--block`` (the bytes the client sends at a time: ``scale.py``'s
1 MiB by default; 0, as requests sends a file, 16 KiB at a time).

A tree is put first on ``PYTHONPATH`` of its service, so an old commit checked out in a
second worktree (``git worktree add --detach /tmp/old COMMIT``) runs as it was. The
table is ``scale.py``'s (made there if missing).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pacsv
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # noqa: E402
    BIN,
    REDIS_URL,
    Process,
    free_port,
    scratch_database,
    wait_http,
    wait_settled,
)
from bench.scale import UPLOAD_BLOCK_BYTES, cpu_seconds, table_file, upload  # noqa: E402


@contextlib.contextmanager
def service(tree: str, deployment: str, extra: dict[str, str]):
    """A fresh service running ``tree``'s code: its URL, processes and database URL."""
    home = Path(tempfile.mkdtemp(prefix="upload-cpu-"))
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(tree).resolve()),
        "TRAINSERVE_HOME": str(home),
        "TRAINSERVE_AUTH": "off",
        "TRAINSERVE_TORCH_THREADS": "1",
        **extra,
    }
    production = deployment == "production"
    with scratch_database() if production else contextlib.nullcontext() as database:
        if production:
            env |= {
                "TRAINSERVE_DATABASE_URL": database,
                "TRAINSERVE_BROKER_URL": REDIS_URL,
                "TRAINSERVE_QUEUE": f"upload-cpu-{port}",
            }
            subprocess.run(
                [str(BIN / "trainserve"), "db", "upgrade"], env=env, check=True, capture_output=True
            )
            argv = [str(BIN / "trainserve"), "api", "--port", str(port)]
        else:
            argv = [str(BIN / "trainserve"), "up", "--home", str(home), "--port", str(port)]
        # Started in its home: a `trainserve up` before 2026-12-01 started its children
        # with `python -m`, which put the working directory first on their sys.path, so
        # run from a checkout they ran that checkout's code, whatever PYTHONPATH said.
        process = Process(argv, env, home / "service.log", cwd=home)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/healthz", 120, process)
            wait_settled(lambda: cpu_seconds([process]))
            yield url, [process], database
        finally:
            process.stop()
            shutil.rmtree(home, ignore_errors=True)


def backend_cpu(database: str | None) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to ``database``."""
    if database is None:
        return {}
    import psycopg

    name = database.rsplit("/", 1)[1]
    with psycopg.connect(database.replace("postgresql+psycopg", "postgresql")) as connection:
        pids = [
            row[0]
            for row in connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        ]
    seconds = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="NAME=PATH of a checkout")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--deployment", choices=("embedded", "production"), default="embedded")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], help="NAME:VAR=VALUE")
    parser.add_argument("--block", action="append", default=[], help="NAME=BYTES (0: 16 KiB)")
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "trainserve-scale"
    )
    args = parser.parse_args()
    path = table_file(args.data, args.rows)
    size = path.stat().st_size / 1e6
    trees = dict(tree.split("=", 1) for tree in args.trees)
    extra: dict[str, dict[str, str]] = {name: {} for name in trees}
    for setting in args.env:
        name, variable = setting.split(":", 1)
        extra[name].update([variable.split("=", 1)])
    blocks = {name: UPLOAD_BLOCK_BYTES for name in trees}
    blocks |= {name: int(size) or None for name, size in (b.split("=", 1) for b in args.block)}
    with contextlib.ExitStack() as stack:
        services = {
            name: stack.enter_context(service(tree, args.deployment, extra[name]))
            for name, tree in trees.items()
        }
        for run in range(args.repeat):
            for name, (url, processes, database) in services.items():
                started = time.perf_counter()
                pacsv.read_csv(path)
                read_csv = size / (time.perf_counter() - started)
                load = os.getloadavg()[0]
                cpu, backends = cpu_seconds(processes), backend_cpu(database)
                client = _cpu()
                dataset, seconds = upload(url, path, block=blocks[name])
                client = _cpu() - client
                cpu = cpu_seconds(processes) - cpu
                after = backend_cpu(database)
                database_cpu = sum(s - backends.get(pid, 0.0) for pid, s in after.items())
                requests.delete(f"{url}/v1/datasets/{dataset['id']}", timeout=600)
                print(
                    f"{run} {args.deployment} {name}: {size / seconds:6.1f} MB/s, read_csv "
                    f"{read_csv:6.1f} MB/s ({size / seconds / read_csv:.2f}x); CPU-s: service "
                    f"{cpu:.2f}, PostgreSQL {database_cpu:.2f}, client {client:.2f}; "
                    f"load {load:.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
