"""Log lines as text or as one JSON object per line, each carrying the job it belongs to.

``TRAINSERVE_LOG_FORMAT=json`` gives lines like::

    {"time": "2026-01-01T12:00:00.123Z", "level": "INFO", "logger": "service.usecases.training",
     "message": "job 3f...: attempt 1 started on ...", "process": 4242,
     "job_id": "3f...", "attempt": 1}

A worker binds the job with :func:`job_context` (the task) and :func:`bind_attempt` (the
use case, once it has claimed an attempt); a filter on the handler copies them onto every
record logged meanwhile in that context, whichever logger logged it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(job)s%(message)s"

_job: ContextVar[dict | None] = ContextVar("trainserve_job", default=None)


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Every line logged inside carries ``job_id`` (and the attempt, once bound)."""
    token = _job.set({"job_id": job_id, "attempt": None})
    try:
        yield
    finally:
        _job.reset(token)


def bind_attempt(number: int) -> None:
    """The attempt of the current :func:`job_context`, from now on until it ends."""
    current = _job.get()
    if current is not None:
        _job.set({**current, "attempt": number})


class JobFilter(logging.Filter):
    """Adds ``job_id`` and ``attempt`` (``None`` outside a job) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _job.get()
        record.job_id = current["job_id"] if current else None
        record.attempt = current["attempt"] if current else None
        return True


class TextFormatter(logging.Formatter):
    """The classic line, with ``job=<id> attempt=<n>`` before the message inside a job."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        record.job = f"job={job_id} attempt={getattr(record, 'attempt', None)} " if job_id else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, process, job fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            line["job_id"] = job_id
            line["attempt"] = getattr(record, "attempt", None)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text", stream=None) -> None:
    """One handler on the root logger, in ``log_format``; replaces any earlier one of ours."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"the log format must be one of {LOG_FORMATS}, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name("trainserve")
    handler.addFilter(JobFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "trainserve"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Python's warnings (a library's DeprecationWarning, Celery's SecurityWarning when run
    # as root) go to stderr as plain text by default; in JSON they are log lines too, so
    # that every line is one object.
    logging.captureWarnings(log_format == "json")
