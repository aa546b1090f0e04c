"""The API's gunicorn worker: predict at the speed of a sync worker, long requests in threads.

:class:`HybridWorker` is gunicorn's sync worker (one request at a time in the process's
main thread, no keep-alive, no hand-off between threads: the lowest predict latency
gunicorn offers, bench/README.md) with one change. A request that is *long* — an event
stream (``GET .../events``), or a body that is chunked or larger than
:data:`LONG_BODY_BYTES` (uploads, batch predict) — is handed, once its headers are read
and before its body is, to a thread of a pool of ``--threads`` per process. One upload
or one watcher then holds one thread, not a process, and the main thread goes on
serving predictions and health checks. When every pool thread is busy, further long
requests wait for one; short requests never wait for them.

Every error gunicorn answers itself (a malformed request line, a URI or header over
the limits: 400, 414, 431, ...) is RFC 9457 problem+json, like the application's own.
"""

from __future__ import annotations

import errno
import json
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http import HTTPStatus

from gunicorn import http, sock, util
from gunicorn.http import errors as http_errors
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.sync import SyncWorker

LONG_BODY_BYTES = 1 << 20
PROBLEM_MIMETYPE = "application/problem+json"

# gunicorn's parse errors → (status, what the problem's detail says).
_CLIENT_ERRORS: tuple[tuple[type, int, str], ...] = (
    (http_errors.LimitRequestLine, 414, "the request line (method, URI and version) is "
     "longer than the server accepts"),
    (http_errors.LimitRequestHeaders, 431, "the request's header fields are larger or more "
     "numerous than the server accepts"),
    (http_errors.UnsupportedTransferCoding, 501, "the Transfer-Encoding is not supported"),
    (http_errors.ExpectationFailed, 417, "the Expect header cannot be met"),
    (http_errors.ForbiddenProxyRequest, 403, "the proxy request is forbidden"),
    (http_errors.InvalidRequestLine, 400, "the request line is malformed"),
    (http_errors.InvalidRequestMethod, 400, "the request method is malformed"),
    (http_errors.InvalidHTTPVersion, 400, "the HTTP version is not supported"),
    (http_errors.InvalidHeaderName, 400, "a header name is malformed"),
    (http_errors.InvalidHeader, 400, "a header is malformed"),
    (http_errors.ObsoleteFolding, 400, "a header uses obsolete line folding"),
    (http_errors.InvalidProxyLine, 400, "the PROXY protocol line is malformed"),
    (http_errors.InvalidSchemeHeaders, 400, "the scheme headers contradict each other"),
    (http_errors.InvalidChunkSize, 400, "a chunk size of the chunked body is malformed"),
    (http_errors.ChunkMissingTerminator, 400, "a chunk of the chunked body is not terminated"),
    (http_errors.InvalidChunkExtension, 400, "a chunk extension of the body is malformed"),
)

_HEADER_ERRORS = (http_errors.InvalidHeader, http_errors.InvalidHeaderName)


def is_long(req) -> bool:
    """Whether a request is served by a pool thread: an event stream, or a body that is
    chunked or over LONG_BODY_BYTES (decided from the headers, before the body is read)."""
    if req.method == "GET":
        return req.path.endswith("/events")
    for name, value in req.headers:
        if name == "TRANSFER-ENCODING":
            return True
        if name == "CONTENT-LENGTH" and value.isdigit() and int(value) > LONG_BODY_BYTES:
            return True
    return False


def problem_bytes(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 answer with an RFC 9457 body; the connection is closed after."""
    phrase = HTTPStatus(status).phrase
    body = json.dumps(
        {"type": "about:blank", "title": phrase, "status": status, "detail": detail}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nConnection: close\r\n"
        f"Content-Type: {PROBLEM_MIMETYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class HybridWorker(SyncWorker):
    """gunicorn's sync worker that serves long requests in a thread pool (module docstring)."""

    def init_process(self):
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, self.cfg.threads), thread_name_prefix="long-request"
        )
        self.in_threads = 0
        self._count = threading.Lock()
        super().init_process()

    def run(self):
        try:
            super().run()
        finally:
            # Graceful stop: the streams and uploads in flight finish (gunicorn's
            # graceful_timeout bounds the wait; event streams end themselves).
            self.pool.shutdown(wait=True)

    def handle(self, listener, client, addr):
        req = None
        threaded = False
        try:
            if self.cfg.is_ssl:
                client = sock.ssl_wrap_socket(client, self.cfg)
            parser = http.get_parser(self.cfg, client, addr)
            req = next(parser)
            if is_long(req):
                # A vanished client frees its thread after the worker timeout.
                client.settimeout(self.cfg.timeout or None)
                self.pool.submit(self._threaded, listener, req, client, addr)
                threaded = True
                return
            self.handle_request(listener, req, client, addr)
        except BaseException as exc:  # noqa: BLE001 - sorted out as the sync worker does
            self._failed(req, client, addr, exc)
        finally:
            if not threaded:
                util.close_graceful(client)

    def _threaded(self, listener, req, client, addr):
        with self._count:
            self.in_threads += 1
        try:
            self.handle_request(listener, req, client, addr)
        except BaseException as exc:  # noqa: BLE001 - as in handle()
            self._failed(req, client, addr, exc)
        finally:
            util.close_graceful(client)
            with self._count:
                self.in_threads -= 1

    def _failed(self, req, client, addr, exc: BaseException) -> None:
        """What the sync worker does with each kind of failure (its ``handle``)."""
        if isinstance(exc, http_errors.NoMoreData):
            self.log.debug("Ignored premature client disconnection. %s", exc)
        elif isinstance(exc, StopIteration):
            self.log.debug("Closing connection. %s", exc)
        elif isinstance(exc, ssl.SSLError) and exc.args[0] == ssl.SSL_ERROR_EOF:
            self.log.debug("ssl connection closed")
        elif isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        else:
            self.handle_error(req, client, addr, exc)

    def handle_error(self, req, client, addr, exc):
        """gunicorn's own error answers, as problem+json instead of an HTML page."""
        try:
            self._answer_error(req, client, addr, exc)
        except Exception:  # noqa: BLE001 - an error answer must never end the worker
            self.log.exception("Failed to answer an error")

    def _answer_error(self, req, client, addr, exc):
        status, detail = 500, "an internal error occurred; it has been logged"
        for kind, code, text in _CLIENT_ERRORS:
            if isinstance(exc, kind):
                status, detail = code, text
                break
        addr = addr or ("", -1)
        if status == 500:
            where = f" {req.method} {req.uri}" if hasattr(req, "uri") else ""
            self.log.exception("Error handling request%s", where)
        else:
            self.log.warning("Invalid request from ip=%s: %s", addr[0], exc)
        if req is None and isinstance(exc, _HEADER_ERRORS):
            req = getattr(exc, "req", None)  # for the access log, as gunicorn does
        if req is not None and not isinstance(req, str):
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"] = addr[0]
            environ["REMOTE_PORT"] = str(addr[1])
            resp = Response(req, client, self.cfg)
            resp.status = f"{status} {HTTPStatus(status).phrase}"
            resp.response_length = 0
            self.log.access(resp, req, environ, datetime.now() - datetime.now())
        try:
            util.write_nonblock(client, problem_bytes(status, detail))
        except Exception:  # noqa: BLE001 - the client may be gone
            self.log.debug("Failed to send error message.")
