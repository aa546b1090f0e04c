"""The `trainserve` command's own parser (the server commands)."""

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from service import cli
from service.cli import _parser, cmd_upkeep


def test_the_upkeep_loop_answers_to_its_old_name_too():
    parser = _parser()
    for name in ("upkeep", "sweeper"):
        args = parser.parse_args([name, "--interval", "2"])
        assert args.run is cmd_upkeep and args.interval == 2.0


class _FakeAutogroup:
    """/proc/self/autogroup: its text, the nice values written, EAGAIN ``busy`` times."""

    def __init__(self, nice: int = 0, busy: int = 0):
        self.nice, self.busy, self.written, self.when = nice, busy, [], []

    def read_text(self) -> str:
        return f"/autogroup-7 nice {self.nice}\n"

    def write_text(self, text: str) -> None:
        if self.busy:
            self.busy -= 1
            raise BlockingIOError(errno.EAGAIN, "rate limited")
        self.nice = int(text)
        self.written.append(self.nice)
        self.when.append(time.monotonic())


def test_the_autogroup_nice_is_set_and_the_previous_one_returned(monkeypatch):
    group = _FakeAutogroup(nice=3, busy=2)
    monkeypatch.setattr(cli, "_AUTOGROUP", group)
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    assert cli._set_autogroup_nice(19) == 3
    assert group.written == [19]  # after two refusals (one change per 0.1 s machine-wide)
    monkeypatch.setattr(cli, "_AUTOGROUP", Path("/nonexistent/autogroup"))
    assert cli._set_autogroup_nice(19) is None


def test_a_process_lowers_its_autogroup_and_raises_it_back():
    """The kernel's rule that the standby relies on: any process may set its autogroup's
    nice between 0 and 19 both ways (in a session of its own: the test's is left alone).
    A kernel without autogroups has nothing to set, and nothing changes."""
    if not Path("/proc/self/autogroup").exists():
        assert cli._set_autogroup_nice(19) is None
        return
    code = (
        "from service import cli; "
        "print(cli._set_autogroup_nice(19), cli._AUTOGROUP.read_text().split()[-1], "
        "cli._set_autogroup_nice(0), cli._AUTOGROUP.read_text().split()[-1])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        start_new_session=True,
    ).stdout.split()  # fmt: skip
    assert out == ["0", "19", "19", "0"]


@pytest.mark.parametrize("byte", [b"g", b""])
def test_a_standby_waits_in_the_background_and_restores_its_nice(monkeypatch, byte):
    group = _FakeAutogroup()
    monkeypatch.setattr(cli, "_AUTOGROUP", group)
    read, write = os.pipe()
    os.write(write, byte)
    os.close(write)
    background = cli._Background(10.0)
    assert group.written == [cli.BACKGROUND_NICE]
    assert cli._wait_as_standby(read, background) is bool(byte)  # end of file: exit
    assert group.written == [cli.BACKGROUND_NICE, 0]


def test_a_standby_left_waiting_gets_its_nice_back_after_a_while(monkeypatch):
    group = _FakeAutogroup()
    monkeypatch.setattr(cli, "_AUTOGROUP", group)
    read, write = os.pipe()
    threading.Timer(1.0, os.write, (write, b"g")).start()
    started = time.monotonic()
    try:
        assert cli._wait_as_standby(read, cli._Background(0.05)) is True
    finally:
        os.close(write)
    assert group.written == [cli.BACKGROUND_NICE, 0]
    assert group.when[1] - started < 0.9  # restored before the byte came


def test_up_children_run_ups_code_not_a_service_package_in_the_working_directory(tmp_path):
    """`python -m` puts the working directory first on sys.path: `up` started from another
    checkout ran that checkout's API and worker (bench/upload_cpu.py compared a tree with
    itself)."""
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "__init__.py").write_text("raise SystemExit('the wrong service')")
    args = _parser().parse_args(["up", "--port", "1"])
    argv = cli._up_children(args)["api"]
    command = [*argv[: argv.index("service.cli") + 1], "--help"]
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage: trainserve" in done.stdout


def test_up_starts_its_standby_with_the_other_children():
    """Not seconds later, on the first requests of a service that has just started."""
    wait = "import os, sys; sys.argv[-1].isdigit() and os.read(int(sys.argv[-1]), 1)"
    supervisor = cli._Supervisor(
        {"worker": [sys.executable, "-c", wait]}, restart={"worker"}, standby={"worker"}
    )
    supervisor.start()
    try:
        assert set(supervisor.standbys) == {"worker"} and not supervisor.standby_due
        assert supervisor.standbys["worker"][0].poll() is None
    finally:
        supervisor.stop()


@pytest.mark.parametrize("seconds", [10.0, 0.0])
def test_the_upkeep_imports_run_in_the_background_and_restore_the_nice_once(monkeypatch, seconds):
    group = _FakeAutogroup()
    monkeypatch.setattr(cli, "_AUTOGROUP", group)
    monkeypatch.setattr(cli, "BACKGROUND_S", seconds)  # 0: the deadline ends it at once
    cli._Upkeep.__new__(cli._Upkeep).prepare()
    assert "service.usecases.upkeep" in sys.modules
    assert group.written == [cli.BACKGROUND_NICE, 0]
