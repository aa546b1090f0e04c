"""service/server.py without a server process: the access line of AccessLogger, the
priority of long requests' threads, and which worker takes which connection."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from service import server
from service.server import AccessLogger, HybridWorker


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
    from service.server import LONG_REQUEST_NICE, _lower_priority

    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = {}

    def priority():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), os.sched_getscheduler(0)

    def long_request():
        _lower_priority()
        seen["own"] = priority()
        child = threading.Thread(  # an upload's own threads inherit it
            target=lambda: seen.update(child=priority())
        )
        child.start()
        child.join()

    thread = threading.Thread(target=long_request)
    thread.start()
    thread.join()
    expected = (min(19, main + LONG_REQUEST_NICE), os.SCHED_IDLE)
    assert seen["own"] == seen["child"] == expected
    assert priority() == (main, os.SCHED_OTHER)


# --- which process takes a connection: HybridWorker's run loop in threads of this process,
# two "processes" (workers) on one listening socket, each answering with its own name.


def _app(name: str, release: threading.Event):
    def app(environ, start_response):
        if environ["PATH_INFO"] in ("/long", "/x/events"):  # long requests: held
            release.wait(30)
        body = name.encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1")])
        return [body]

    return app


class _Running:
    """A HybridWorker serving ``listener`` in a thread, configured for ``workers``."""

    def __init__(self, name, listener, release, workers):
        cfg = Config()
        cfg.set("workers", workers)
        cfg.set("threads", 2)
        cfg.set("keepalive", 30)
        self.worker = HybridWorker(0, os.getppid(), [listener], None, 30, cfg, Logger(cfg))
        self.worker.wsgi = _app(name, release)
        self.worker.prepare()
        self.worker.PIPE = os.pipe()
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def stop(self):
        self.worker.alive = False
        os.write(self.worker.PIPE[1], b".")
        self.thread.join(30)
        for fd in self.worker.PIPE:
            os.close(fd)
        self.worker.tmp.close()


@contextlib.contextmanager
def _listening():
    listener = socket.create_server(("127.0.0.1", 0))
    running: list[_Running] = []
    release = threading.Event()
    try:
        yield listener, release, running
    finally:
        release.set()
        for r in running:
            r.stop()
        listener.close()


def _get(conn: socket.socket, path: str = "/") -> tuple[bytes, bytes]:
    """Send a GET on ``conn``; the answer's head and its one-byte body."""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while not (b"\r\n\r\n" in data and len(data.partition(b"\r\n\r\n")[2]) >= 1):
        chunk = conn.recv(1 << 16)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def _start_long(listener, worker: HybridWorker) -> socket.socket:
    """A chunked upload that sends its first chunk and pauses, in ``worker``'s thread pool."""
    conn = socket.create_connection(listener.getsockname(), timeout=30)
    head = b"POST /long HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    conn.sendall(head + b"4\r\nabcd\r\n")
    deadline = time.monotonic() + 30
    while worker.uploads == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return conn


def test_a_process_running_a_long_request_leaves_short_ones_to_the_others(monkeypatch):
    # Long enough that the idle process surely takes every new connection first.
    monkeypatch.setattr(server, "ACCEPT_DEFER_SECONDS", 5.0)
    with _listening() as (listener, release, running):
        running.append(_Running("A", listener, release, workers=2))
        kept = socket.create_connection(listener.getsockname(), timeout=30)
        head, body = _get(kept)
        assert body == b"A" and b"Connection: close" not in head
        upload = _start_long(listener, running[0].worker)
        running.append(_Running("B", listener, release, workers=2))
        for _ in range(3):  # new connections go to the process without the upload
            with socket.create_connection(listener.getsockname(), timeout=30) as conn:
                assert _get(conn)[1] == b"B"
        # The connection kept by A before the upload gets one more answer from A, which
        # closes it: its client's next connection lands on B.
        head, body = _get(kept)
        assert body == b"A" and b"Connection: close" in head
        assert kept.recv(1) == b""
        release.set()
        assert upload.recv(1 << 16).startswith(b"HTTP/1.1 200")
        kept.close()
        upload.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_process_running_a_long_request_still_serves_when_no_other_does(monkeypatch, workers):
    monkeypatch.setattr(server, "ACCEPT_DEFER_SECONDS", 0.2)
    with _listening() as (listener, release, running):
        # Alone: either the only process (1), or the other one is not accepting (2).
        running.append(_Running("A", listener, release, workers=workers))
        kept = socket.create_connection(listener.getsockname(), timeout=30)
        _get(kept)
        upload = _start_long(listener, running[0].worker)
        with socket.create_connection(listener.getsockname(), timeout=30) as conn:
            head, body = _get(conn)  # accepted after the deferral, if any
            assert body == b"A"
        head, body = _get(kept)
        assert body == b"A"
        # One process: nowhere else to go, the connection stays open.
        assert (b"Connection: close" in head) == (workers > 1)
        release.set()
        assert upload.recv(1 << 16).startswith(b"HTTP/1.1 200")
        kept.close()
        upload.close()


def test_an_event_stream_does_not_move_short_requests_away(monkeypatch):
    monkeypatch.setattr(server, "ACCEPT_DEFER_SECONDS", 30.0)
    with _listening() as (listener, release, running):
        running.append(_Running("A", listener, release, workers=2))
        kept = socket.create_connection(listener.getsockname(), timeout=30)
        _get(kept)
        stream = socket.create_connection(listener.getsockname(), timeout=30)
        stream.sendall(b"GET /x/events HTTP/1.1\r\nHost: x\r\n\r\n")
        # A long request, in a thread: it mostly sleeps, so A stays a place for predicts.
        with socket.create_connection(listener.getsockname(), timeout=30) as conn:
            assert _get(conn)[1] == b"A"  # at once: not deferred (30 s would time out)
        head, body = _get(kept)
        assert body == b"A" and b"Connection: close" not in head
        release.set()
        assert stream.recv(1 << 16).startswith(b"HTTP/1.1 200")
        kept.close()
        stream.close()


def test_which_requests_are_long_is_read_from_the_headers():
    """An event stream, and a body that is chunked, over 1 MiB or declared compressed (a
    small gzip CSV may hold millions of rows to predict) go to a pool thread."""

    class Req:
        def __init__(self, method, path, headers):
            self.method, self.path, self.headers = method, path, headers

    big = str(server.LONG_BODY_BYTES + 1)
    assert server.is_long(Req("GET", "/v1/jobs/1/events", []))
    assert not server.is_long(Req("GET", "/v1/jobs/1", []))
    assert server.is_long(Req("POST", "/v1/datasets", [("TRANSFER-ENCODING", "chunked")]))
    assert server.is_long(Req("POST", "/v1/datasets", [("CONTENT-LENGTH", big)]))
    assert not server.is_long(Req("POST", "/v1/models/m/predict", [("CONTENT-LENGTH", "900")]))
    for coding in ("gzip", "x-gzip", "zstd", " GZIP "):
        headers = [("CONTENT-LENGTH", "900"), ("CONTENT-ENCODING", coding)]
        assert server.is_long(Req("POST", "/v1/models/m/predict", headers)), coding
    headers = [("CONTENT-LENGTH", "900"), ("CONTENT-ENCODING", "identity")]
    assert not server.is_long(Req("POST", "/v1/models/m/predict", headers))


# --- a long request's body read from the socket (RawBody): a HybridWorker in a thread,
# its application reading ``environ["trainserve.raw_body"]``.


def test_the_app_looks_for_the_raw_body_where_the_server_puts_it():
    """Two modules name the environ key (the server's side does not import the app's):
    apart, the app would quietly read every upload through gunicorn's copies again."""
    from service.api import body

    assert body.RAW_BODY == server.RAW_BODY


def _raw_app(seen: dict, first: int = 0, piece: int = 1 << 20):
    """Reads ``first`` bytes through wsgi.input (gunicorn's own buffers), then the rest
    through the raw body in ``piece``-byte reads; answers with how much it read."""

    def app(environ, start_response):
        raw = environ.get(server.RAW_BODY)
        seen["raw"] = raw is not None
        data = bytearray(environ["wsgi.input"].read(first) if first else b"")
        if raw is not None:
            buffer = bytearray(piece)
            seen["sizes"] = []
            while raw.remaining:
                got = raw.readinto(buffer)
                seen["sizes"].append(got)
                if not got:
                    break
                data += buffer[:got]
            seen["remaining"] = raw.remaining
        else:
            data += environ["wsgi.input"].read()
        seen["body"] = bytes(data)
        seen["done"].set()
        answer = str(len(data)).encode()
        start_response("200 OK", [("Content-Length", str(len(answer)))])
        return [answer]

    return app


@contextlib.contextmanager
def _serving(app):
    listener = socket.create_server(("127.0.0.1", 0))
    running = _Running("raw", listener, threading.Event(), workers=1)
    running.worker.wsgi = app
    try:
        yield listener
    finally:
        running.stop()
        listener.close()


def _answer(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(1 << 16):
        data += chunk
    return data


BODY = bytes(range(256)) * (3 * 4096 + 7)  # 3 MiB and a bit: a long request


@pytest.mark.parametrize("first", [0, 5, 300_000], ids=["raw-only", "after-5", "after-300k"])
def test_a_long_body_is_read_from_the_socket_after_what_gunicorn_read_ahead(first):
    """The head and the body's first bytes arrive together (gunicorn reads them ahead
    with the head), the rest later: the raw body hands out gunicorn's buffered bytes
    (its unreader's, and its Body's after a read through wsgi.input), then the socket's,
    each in order, to the end of the Content-Length and not past it."""
    seen = {"done": threading.Event()}
    with _serving(_raw_app(seen, first)) as listener:
        conn = socket.create_connection(listener.getsockname(), timeout=30)
        head = f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n\r\n"
        conn.sendall(head.encode() + BODY[:5000])
        time.sleep(0.2)  # gunicorn has read the head and what came with it
        conn.sendall(BODY[5000:])
        answer = _answer(conn)
        conn.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(str(len(BODY)).encode())
    assert seen["raw"] and seen["remaining"] == 0
    assert seen["body"] == BODY
    assert all(size > 0 for size in seen["sizes"])


def test_a_body_cut_short_by_its_client_reads_as_its_end_with_bytes_remaining():
    seen = {"done": threading.Event()}
    with _serving(_raw_app(seen)) as listener:
        conn = socket.create_connection(listener.getsockname(), timeout=30)
        head = f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n\r\n"
        conn.sendall(head.encode() + BODY[: len(BODY) // 2])
        conn.shutdown(socket.SHUT_WR)  # the client is done sending: half a body
        assert seen["done"].wait(30)
        conn.close()
    assert seen["raw"] and seen["sizes"][-1] == 0
    assert seen["body"] == BODY[: len(BODY) // 2]
    assert seen["remaining"] == len(BODY) - len(BODY) // 2


@pytest.mark.parametrize(
    "headers, body",
    [
        ("Content-Length: 10\r\n", b"0123456789"),  # short: served in the main thread
        ("Transfer-Encoding: chunked\r\n", b"a\r\n0123456789\r\n0\r\n\r\n"),  # long, chunked
    ],
    ids=["short", "chunked"],
)
def test_only_a_long_body_of_known_length_is_offered_raw(headers, body):
    seen = {"done": threading.Event()}
    with _serving(_raw_app(seen)) as listener:
        conn = socket.create_connection(listener.getsockname(), timeout=30)
        conn.sendall(f"POST /upload HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body)
        assert seen["done"].wait(30)
        conn.close()
    assert not seen["raw"] and seen["body"] == b"0123456789"
