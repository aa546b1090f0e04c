"""service/server.py without a server: the access line of AccessLogger."""

from __future__ import annotations

import base64
from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from service.server import AccessLogger


def _line(logger_class, environ, monkeypatch) -> str:
    cfg = Config()
    cfg.set("accesslog", "-")
    logger = logger_class(cfg)
    lines = []
    monkeypatch.setattr(logger.access_log, "info", lambda fmt, args: lines.append(fmt % args))
    monkeypatch.setattr(logger, "now", lambda: "[30/Nov/2026:12:00:00 +0000]")
    resp = SimpleNamespace(status="200 OK", sent=123, headers=[("Content-Type", "x")])
    req = SimpleNamespace(headers=[("HOST", "h")])
    logger.access(resp, req, environ, timedelta(microseconds=1500))
    return lines[0]


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"HTTP_USER_AGENT": 'wrk "quoted"', "HTTP_REFERER": 'http://x/?a="b"'},
        {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"ann:secret").decode()},
        {"HTTP_AUTHORIZATION": "Bearer ts_key"},
    ],
    ids=["plain", "quotes", "basic-auth-user", "bearer"],
)
def test_the_access_line_is_gunicorns_own(monkeypatch, extra):
    environ = {
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "POST",
        "RAW_URI": '/v1/models/m/predict?x="1"',
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/v1/models/m/predict",
        **extra,
    }
    ours = _line(AccessLogger, environ, monkeypatch)
    assert ours == _line(Logger, environ, monkeypatch)
    assert ours.startswith("127.0.0.1 - ") and ' 200 123 "' in ours


def test_long_request_threads_run_at_a_lower_priority_than_the_main_thread():
    import os
    import threading

    from service.server import LONG_REQUEST_NICE, _lower_priority

    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = {}

    def long_request():
        _lower_priority()
        seen["own"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        child = threading.Thread(  # an upload's own threads inherit it
            target=lambda: seen.update(child=os.getpriority(os.PRIO_PROCESS, 0))
        )
        child.start()
        child.join()

    thread = threading.Thread(target=long_request)
    thread.start()
    thread.join()
    expected = min(19, main + LONG_REQUEST_NICE)
    assert seen["own"] == seen["child"] == expected
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main
