"""What the speed benchmarks share: a scratch PostgreSQL database, processes, wrk.

Not part of the service; the benchmarks import it from the repository root.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import requests

from tests.support import servers
from tests.support.processes import stop_group

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REDIS_URL = servers.REDIS_URL
#: A fresh PostgreSQL database, dropped after the block; yields its URL.
scratch_database = functools.partial(servers.scratch_database, "trainserve_bench_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None):
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def pids(self) -> list[int]:
        """This process and its children (gunicorn workers, Celery pool)."""
        out = subprocess.run(
            ["pgrep", "-g", str(self.popen.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        stop_group(self.popen)
        self._file.close()


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, timeout: float = 60, process: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            raise RuntimeError(f"{url}: the server exited; see {process.log}")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def wait_settled(
    cpu: Callable[[], float], quiet: float = 0.05, window: float = 1.0, timeout: float = 30
) -> float:
    """Wait until a service has finished starting: ``cpu()`` (its processes' CPU seconds
    so far) grows by less than ``quiet`` of a core over ``window`` seconds. Returns the
    seconds waited. ``/healthz`` answers a few seconds before the start-up is over (the
    standby worker's and the upkeep loop's imports, at low priority); an upload's threads
    run under SCHED_IDLE and yield to them, so an upload measured then measures them."""
    started = time.monotonic()
    before = cpu()
    while time.monotonic() - started < timeout:
        time.sleep(window)
        now = cpu()
        if now - before < quiet * window:
            break
        before = now
    return time.monotonic() - started


def post_latencies(url: str, body: dict, seconds: float) -> list[float]:
    """POST ``body`` as JSON one request after another on one kept-alive connection for
    ``seconds``; each answer's seconds (an error answer raises)."""
    latencies = []
    session = requests.Session()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        session.post(url, json=body, timeout=60).raise_for_status()
        latencies.append(time.perf_counter() - started)
    return latencies


def wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    duration: float,
    connections: int,
    workdir: Path,
) -> dict[str, float]:
    """POST ``body`` for ``duration`` seconds with wrk; req/s and latency percentiles (ms)."""
    body_file = workdir / f"body-{uuid.uuid4().hex[:8]}.json"
    body_file.write_bytes(body)
    script = workdir / f"post-{uuid.uuid4().hex[:8]}.lua"
    lines = [
        'wrk.method = "POST"',
        f'local f = io.open("{body_file}", "rb")',
        "wrk.body = f:read('*a')",
        "f:close()",
    ]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_wrk(result.stdout)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50/p90/p99 in ms, and the count of non-2xx answers, from ``wrk --latency``."""
    found: dict[str, float] = {}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    found["rps"] = float(rps.group(1))
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        found[f"p{pct}"] = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    found["non2xx"] = float(errors.group(1)) if errors else 0.0
    sockets = re.search(r"Socket errors:.*", output)
    found["socket_errors"] = 1.0 if sockets else 0.0
    return found


def versions() -> str:
    import numpy
    import torch

    return (
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, numpy {numpy.__version__}, "
        f"{os.cpu_count()} cores"
    )


def top_frames(speedscope: Path, limit: int = 15) -> list[tuple[float, float, str]]:
    """(inclusive %, self %, function) of a py-spy speedscope profile, most inclusive first."""
    import json

    data = json.loads(speedscope.read_text())
    frames = data["shared"]["frames"]
    inclusive: dict[int, float] = {}
    own: dict[int, float] = {}
    total = 0.0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            total += weight
            for index in set(stack):
                inclusive[index] = inclusive.get(index, 0.0) + weight
            if stack:
                own[stack[-1]] = own.get(stack[-1], 0.0) + weight

    def label(i: int) -> str:
        frame = frames[i]
        where = Path(frame.get("file") or "?")
        return f"{frame['name']} ({'/'.join(where.parts[-2:])}:{frame.get('line', '?')})"

    rows = sorted(inclusive, key=inclusive.get, reverse=True)[:limit]
    return [(100 * inclusive[i] / total, 100 * own.get(i, 0.0) / total, label(i)) for i in rows]
