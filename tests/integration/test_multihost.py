"""Many hosts, for real: PostgreSQL and Redis on one network namespace, two API replicas
and the upkeep loop on two more, two workers on two more, each with its own hostname and
home, talking over a bridge by the namespaces' addresses only (tests/integration/netns.py).

What it shows: jobs spread over both workers; a worker whose cable is pulled mid-job
loses the job once its lease lapses, and the other worker resumes it from its checkpoint
(metrics 1..N once each); when the cable is back, the cut worker's stale attempt is
fenced (it writes nothing and stops); an API replica killed while the other keeps
serving. Every namespace and process is removed however the test ends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.helpers import slow_job, wait_until
from tests.integration.netns import Host, Network, network
from tests.support.data import mixed_csv

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 3.0
# Long enough to be cut mid-way, short enough for the suite: exactly 60 epochs.
SLOW_JOB = slow_job(60, 64, 3)


class Cluster:
    """The hosts and the processes of one trainserve deployment on a :class:`Network`."""

    def __init__(self, net: Network, workdir: Path):
        self.net, self.workdir = net, workdir
        self.db, self.api1, self.api2 = (net.add_host(n) for n in ("db", "api1", "api2"))
        self.w1, self.w2 = net.add_host("w1"), net.add_host("w2")
        self.client = net.add_host("client")
        self.key = ""
        self.logs: dict[str, Path] = {}
        self.database_url = f"postgresql+psycopg://postgres@{self.db.address}:5432/postgres"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TRAINSERVE_")}
        self.base_env = {
            **environ,
            "PYTHONPATH": str(ROOT),
            "TRAINSERVE_DATABASE_URL": self.database_url,
            "TRAINSERVE_BROKER_URL": f"redis://{self.db.address}:6379/0",
            "TRAINSERVE_AUTH": "required",
            "TRAINSERVE_LEASE_SECONDS": str(LEASE_S),
            "TRAINSERVE_REPUBLISH_AFTER_SECONDS": "2",
            # A worker cut between two statements of a transaction frees its job's row
            # within this (the default 60 s would outlast the waits below).
            "TRAINSERVE_DB_IDLE_TRANSACTION_SECONDS": "5",
            "TRAINSERVE_TORCH_THREADS": "1",
        }

    def env(self, host: Host) -> dict[str, str]:
        home = self.workdir / host.name
        home.mkdir(exist_ok=True)
        return {**self.base_env, "HOME": str(home), "TRAINSERVE_HOME": str(home)}

    def start_database(self) -> None:
        data = Path(tempfile.mkdtemp(prefix="pg-", dir=self.workdir))
        shutil.chown(self.workdir, "postgres")
        shutil.chown(data, "postgres")
        done = self.db.run(
            "runuser", "-u", "postgres", "--",
            "initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.db.address.rsplit('.', 1)[0]}.0/24 trust\n")
        self.logs["postgres"] = self.workdir / "postgres.log"
        self.db.start(
            "postgres", "-D", str(data),
            "-c", f"listen_addresses={self.db.address}",
            "-c", f"unix_socket_directories={data}",
            "-c", "fsync=off", "-c", "max_connections=60",
            env={**os.environ}, log=self.logs["postgres"], user="postgres",
        )  # fmt: skip
        self.logs["redis"] = self.workdir / "redis.log"
        self.db.start(
            "redis-server", "--bind", self.db.address, "--port", "6379",
            "--save", "", "--appendonly", "no", "--protected-mode", "no",
            env={**os.environ}, log=self.logs["redis"],
        )  # fmt: skip
        wait_until(
            lambda: self.db.run("pg_isready", "-h", self.db.address, "-q").returncode == 0,
            30,
            "PostgreSQL in the db namespace",
        )
        wait_until(
            lambda: (
                self.db.run("redis-cli", "-h", self.db.address, "ping").stdout.strip() == "PONG"
            ),
            30,
            "Redis in the db namespace",
        )

    def trainserve(self, host: Host, *args: str) -> str:
        done = host.run(sys.executable, "-m", "service.cli", *args, env=self.env(host), cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(self, host: Host, name: str, *args: str) -> subprocess.Popen:
        self.logs[name] = self.workdir / f"{name}.log"
        return host.start(
            sys.executable, "-m", "service.cli", *args, env=self.env(host), log=self.logs[name]
        )

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def sql(self, query: str) -> list[list[str]]:
        done = self.db.run(
            "psql", "-h", self.db.address, "-U", "postgres", "-d", "postgres",
            "-At", "-F", "\t", "-c", query,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [line.split("\t") for line in done.stdout.splitlines()]

    def http(self, method: str, url: str, *, json_body=None, csv: Path | None = None):
        """curl from the client namespace; the status and the decoded JSON body."""
        command = ["curl", "-sS", "-m", "10", "-X", method, "-w", "\n%{http_code}"]
        command += ["-H", f"Authorization: Bearer {self.key}"]
        if json_body is not None:
            command += ["-H", "Content-Type: application/json", "-d", json.dumps(json_body)]
        if csv is not None:
            command += ["-H", "Content-Type: text/csv", "--data-binary", f"@{csv}"]
        done = self.client.run(*command, url)
        if done.returncode != 0:
            return 0, done.stderr
        body, _, status = done.stdout.rpartition("\n")
        return int(status), json.loads(body) if body else None

    def url(self, api: Host, path: str) -> str:
        return f"http://{api.address}:8000{path}"

    def job(self, api: Host, job_id: str) -> dict:
        status, body = self.http("GET", self.url(api, f"/v1/jobs/{job_id}"))
        assert status == 200, body
        return body

    def where(self, job_id: str) -> tuple[str, int, str]:
        """The job's worker (its host's name), attempt and status, from the database."""
        ((worker, attempt, status),) = self.sql(
            f"SELECT coalesce(worker, ''), attempt, status FROM jobs WHERE id = '{job_id}'"
        )
        host = worker.split("@", 1)[1].split("/", 1)[0] if "@" in worker else ""
        return host, int(attempt), status


@pytest.fixture
def cluster():
    workdir = Path(tempfile.mkdtemp(prefix="trainserve-netns-"))
    try:
        with network() as net:
            yield Cluster(net, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_workers_on_other_hosts_fail_over_and_are_fenced(cluster: Cluster):
    c = cluster
    started = time.monotonic()
    # Nothing of the machine's own network is reachable from a host: not its PostgreSQL.
    probe = c.w1.run(
        "python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 5432), 1)"
    )
    assert probe.returncode != 0
    c.start_database()
    c.trainserve(c.api1, "db", "upgrade")
    c.key = c.trainserve(c.api1, "keys", "create", "--tenant", "netns").strip().splitlines()[-1]
    for api in (c.api1, c.api2):
        c.start(api, api.name, "api", "--host", api.address, "--port", "8000", "--workers", "1")
    c.start(c.api2, "upkeep", "upkeep", "--interval", "1")
    workers = {"w1": c.start(c.w1, "w1", "worker"), "w2": c.start(c.w2, "w2", "worker")}
    for name in workers:
        wait_until(lambda name=name: " ready." in c.log(name), 90, f"worker {name}")
    for api in (c.api1, c.api2):
        wait_until(lambda api=api: c.http("GET", c.url(api, "/readyz"))[0] == 200, 60, api.name)
    ready = time.monotonic() - started

    csv = c.workdir / "table.csv"
    csv.write_bytes(mixed_csv(600))
    status, dataset = c.http("POST", c.url(c.api1, "/v1/datasets?name=t"), csv=csv)
    assert status == 201, dataset

    def submit(api: Host, name: str, hyperparameters: dict) -> str:
        body = {"dataset_id": dataset["id"], "target": "species", "model_name": name,
                "hyperparameters": hyperparameters}  # fmt: skip
        status, job = c.http("POST", c.url(api, "/v1/jobs"), json_body=body)
        assert status == 202, job
        return job["id"]

    # 1. Jobs spread: a busy worker takes nothing more (prefetch 1), so while the slow job
    # trains on one worker the quick ones go to the other.
    slow = submit(c.api1, "slow", SLOW_JOB)
    wait_until(lambda: c.job(c.api1, slow)["epoch"] >= 1, 60, "the slow job to start")
    quick_job = {"recipe": "plain", "epochs": 2}
    quick = [submit(c.api2, f"quick{i}", {**quick_job, "seed": i}) for i in range(2)]
    wait_until(lambda: c.where(quick[0])[2] != "queued", 60, "a quick job to start")
    hosts = {c.where(job_id)[0] for job_id in [slow, quick[0]]}
    assert hosts == {"w1", "w2"}, hosts

    # 2. Pull the cable of the slow job's worker mid-job.
    victim_name, attempt, status = c.where(slow)
    assert (attempt, status) == (1, "running")
    victim = c.w1 if victim_name == "w1" else c.w2
    other = c.w2 if victim is c.w1 else c.w1
    at_cut = c.job(c.api1, slow)["epoch"]
    assert 1 <= at_cut < SLOW_JOB["epochs"]
    victim.cut()
    cut = time.monotonic()
    wait_until(
        lambda: c.where(slow)[:2] == (other.name, 2), 30, "a second attempt on the other worker"
    )
    failover_s = time.monotonic() - cut
    job = wait_until(
        lambda: (j := c.job(c.api1, slow))["status"] in ("succeeded", "failed") and j,
        90,
        "the slow job to finish on the other worker",
    )
    assert job["status"] == "succeeded" and job["attempt"] == 2, job
    resumed = [line for line in c.log(other.name).splitlines() if "resumed from checkpoint" in line]
    assert resumed, c.log(other.name)[-3000:]
    resume_epoch = int(resumed[0].rsplit(" ", 1)[1])
    assert at_cut - 1 <= resume_epoch  # at most the epoch in flight is redone

    # 3. The cable is back: the stale attempt finds itself fenced, writes nothing, stops.
    rows_before = c.sql(f"SELECT epoch, attempt FROM epoch_metrics WHERE job_id = '{slow}'")
    victim.reconnect()
    back = time.monotonic()
    wait_until(
        lambda: "attempt 1 lost its lease; stopping" in c.log(victim_name),
        60,
        "the cut worker's attempt to find itself fenced",
    )
    fenced_s = time.monotonic() - back
    rows = c.sql(f"SELECT epoch, attempt FROM epoch_metrics WHERE job_id = '{slow}' ORDER BY epoch")
    for job_id in quick:
        assert c.job(c.api1, job_id)["status"] == "succeeded"
    assert sorted(rows) == sorted(rows_before)
    assert [int(e) for e, _ in rows] == list(range(1, SLOW_JOB["epochs"] + 1))
    assert all(int(a) == 2 for e, a in rows if int(e) > resume_epoch), rows
    assert c.where(slow)[1:] == (2, "succeeded")
    assert workers[victim_name].poll() is None  # the worker lives on; only the attempt ended

    # 4. An API replica dies; the other keeps serving reads and predictions.
    os.killpg(c.api1.processes[0].pid, signal.SIGKILL)  # gunicorn and its worker
    assert c.http("GET", c.url(c.api1, "/healthz"))[0] != 200
    assert c.job(c.api2, slow)["status"] == "succeeded"
    status, answer = c.http(
        "POST",
        c.url(c.api2, "/v1/models/slow/predict"),
        json_body={"records": [{"x1": 0.5, "x2": -1.0, "colour": "red", "flag": True}]},
    )
    assert status == 200, answer
    assert abs(sum(answer["predictions"][0]["probabilities"].values()) - 1) < 1e-6

    print(
        f"\nhosts up in {ready:.1f} s; slow job on {victim_name}, cut after epoch {at_cut}; "
        f"attempt 2 running on {other.name} {failover_s:.1f} s after the cut (lease "
        f"{LEASE_S:.0f} s), resumed from epoch {resume_epoch}; the stale attempt fenced "
        f"{fenced_s:.1f} s after the cable came back; whole test "
        f"{time.monotonic() - started:.1f} s"
    )
