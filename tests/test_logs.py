"""Log lines: text or one JSON object per line, with the job and attempt inside a job."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

from service.config import Settings
from service.logs import bind_attempt, configure_logging, job_context


@pytest.fixture
def capture():
    """Our handler on the root logger, writing to a buffer; the old handlers back after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def configure(log_format: str) -> io.StringIO:
        stream = io.StringIO()
        configure_logging("INFO", log_format, stream=stream)
        return stream

    yield configure
    root.handlers[:], level = saved
    root.setLevel(level)
    logging.captureWarnings(False)


def test_json_lines_carry_the_job_and_attempt_inside_a_job_only(capture):
    stream = capture("json")
    log = logging.getLogger("service.some.module")
    log.info("before %s", "the job")
    with job_context("job-1"):
        logging.getLogger("celery.app.trace").warning("claimed")
        bind_attempt(2)
        log.info("epoch %d", 3)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("crashed")
    log.info("after")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "before the job",
        "claimed",
        "epoch 3",
        "crashed",
        "after",
    ]
    first = lines[0]
    assert set(first) == {"time", "level", "logger", "message", "process"}
    assert first["level"] == "INFO" and first["logger"] == "service.some.module"
    assert first["time"].endswith("Z") and first["process"] > 0
    assert (lines[1]["job_id"], lines[1]["attempt"]) == ("job-1", None)
    assert (lines[2]["job_id"], lines[2]["attempt"]) == ("job-1", 2)
    assert "ValueError: boom" in lines[3]["exc_info"] and lines[3]["level"] == "ERROR"
    assert "job_id" not in lines[4]  # the context ended with the job


def test_text_lines_name_the_job_inside_a_job(capture):
    stream = capture("text")
    with job_context("job-9"):
        bind_attempt(1)
        logging.getLogger("x").warning("slow epoch")
    logging.getLogger("x").warning("idle")
    inside, outside = stream.getvalue().splitlines()
    assert " x: job=job-9 attempt=1 slow epoch" in inside
    assert outside.endswith(" x: idle")


def test_configuring_twice_keeps_one_handler(capture):
    capture("text")
    stream = capture("json")
    logging.getLogger("y").info("once")
    assert len(stream.getvalue().splitlines()) == 1
    assert sum(h.get_name() == "trainserve" for h in logging.getLogger().handlers) == 1


def test_an_unknown_format_is_refused_at_start_up():
    with pytest.raises(ValueError, match="TRAINSERVE_LOG_FORMAT"):
        Settings.from_env({"TRAINSERVE_LOG_FORMAT": "xml"})


def test_the_command_logs_json_when_asked(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "db", "upgrade", "--home", str(tmp_path)],
        env={"TRAINSERVE_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"logger": "trainserve", "message": "database schema is at head"}.items() <= (
        lines[-1].items()
    )


def test_in_json_a_python_warning_is_a_log_line(capture):
    stream = capture("json")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("mind the gap", UserWarning, stacklevel=1)
    (line,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert line["logger"] == "py.warnings" and "UserWarning: mind the gap" in line["message"]


def test_in_json_every_line_of_a_starting_worker_is_an_object(tmp_path):
    """`TRAINSERVE_LOG_FORMAT=json trainserve worker` up to "ready": no Celery banner, and
    warnings (Celery's SecurityWarning under root, as here) are log lines. (Celery's own
    shutdown notices are still plain text: docs/operations.md.)"""
    env = {"TRAINSERVE_LOG_FORMAT": "json", "TRAINSERVE_HOME": str(tmp_path),
           "TRAINSERVE_DEVICE": "cpu", "PATH": "/usr/bin:/bin"}  # fmt: skip
    upgrade = [sys.executable, "-m", "service.cli", "db", "upgrade"]
    subprocess.run(upgrade, env=env, check=True, capture_output=True, timeout=120)
    worker = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    parsed = []
    try:
        deadline = time.monotonic() + 120
        while not (parsed and parsed[-1]["message"].endswith(" ready.")):
            assert time.monotonic() < deadline, f"not ready after 120 s: {parsed}"
            line = worker.stdout.readline()
            assert line, f"the worker ended before it was ready: {parsed}"
            if line.strip():
                parsed.append(json.loads(line))
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.communicate(timeout=60)
    assert parsed[-1]["logger"] == "celery.apps.worker"
