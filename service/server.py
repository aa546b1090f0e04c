"""The API's gunicorn worker: predict at the speed of a sync worker, long requests in threads.

:class:`HybridWorker` serves short requests one at a time in the process's main thread,
as gunicorn's sync worker does (no hand-off between threads: the lowest predict latency
gunicorn offers, bench/README.md), with two changes:

- **Keep-alive.** A connection whose answer allows it stays open (gunicorn's
  ``keepalive`` seconds, at most ``worker_connections`` per process), waiting in the
  main thread's selector beside the listening sockets; its next request is served
  when it arrives. A client that reuses its connection skips a TCP handshake and an
  accept per request.
- **Long requests in threads.** A request that is *long* — an event stream
  (``GET .../events``), or a body that is chunked or larger than
  :data:`LONG_BODY_BYTES` (uploads, batch predict) — is handed, once its headers are
  read and before its body is, to a thread of a pool of ``--threads`` per process,
  and its connection closes after it. One upload or one watcher then holds one thread,
  not a process, and the main thread goes on serving predictions and health checks.
  When every pool thread is busy, further long requests wait for one; short requests
  never wait for them. The pool's threads (and the threads an upload starts) run at a
  lower CPU priority than the main thread (Linux's ``SCHED_IDLE``, and nice +10), so
  that a multi-GB upload yields a core to each predict as it arrives; and while short
  requests are being answered, the threads of a process running uploads keep off one
  of the allowed CPUs (``service.cores``). A long request's body of known length
  (Content-Length) is also offered to the application as :class:`RawBody`
  (``environ["trainserve.raw_body"]``): read with ``recv_into`` straight into the
  application's buffer, without gunicorn's bytes objects and buffers (an upload,
  ``service.api.body.BodyStream``).
- **Short requests away from uploads.** A short request served beside an upload in the
  same process waits for the upload's Python parts (the byte guard, the checks, the
  summaries' bookkeeping, the part inserts, gunicorn's reads of a chunked body) to hand over the
  GIL, up to CPython's switch interval each time, several times a request. So while a
  process runs a long request with a body (an upload, a batch predict; not an event
  stream, which mostly sleeps) and there are other processes (``workers`` > 1), it
  leaves new connections to them: a readable listening socket is left alone for
  :data:`ACCEPT_DEFER_SECONDS`, after which the process accepts what no other process
  took (every process busy, or none waiting); and each connection it kept alive from
  before closes after its next answer (``Connection: close``), so that its client's
  next connection lands on another process. A process with only event streams, or the
  only process, serves as before.

Every error gunicorn answers itself (a malformed request line, a URI or header over
the limits: 400, 414, 431, ...) is RFC 9457 problem+json, like the application's own.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import json
import os
import selectors
import socket
import ssl
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus

from gunicorn import http, sock, util
from gunicorn.glogging import Logger
from gunicorn.http import errors as http_errors
from gunicorn.http import wsgi
from gunicorn.http.body import LengthReader
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.sync import SyncWorker

from service.cores import SHORT_REQUESTS, CoreShare

LONG_BODY_BYTES = 1 << 20
# How long a process serving long requests leaves a new connection to the other
# processes before it accepts it itself (when there are others).
ACCEPT_DEFER_SECONDS = 0.02
# How much lower a long request's threads run than the main thread's short requests.
LONG_REQUEST_NICE = 10
# How long a kept-alive connection may take to send the rest of a body the application
# did not read, before the connection is closed instead.
DRAIN_SECONDS = 5.0
PROBLEM_MIMETYPE = "application/problem+json"
# The environ key of a long request's body read straight from its socket (RawBody); the
# application's side is service.api.body.BodyStream.
RAW_BODY = "trainserve.raw_body"

# gunicorn's default access_log_format (Apache's combined format).
COMBINED = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

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
    chunked, declared gzip or zstd, or over LONG_BODY_BYTES (decided from the headers,
    before the body is read)."""
    if req.method == "GET":
        return req.path.endswith("/events")
    for name, value in req.headers:
        if name == "TRANSFER-ENCODING":
            return True
        # A compressed table (a CSV to predict or evaluate) may expand a thousandfold.
        if name == "CONTENT-ENCODING" and value.strip().lower() in ("gzip", "x-gzip", "zstd"):
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


@dataclass(eq=False)
class Connection:
    """A client connection of the worker: its socket, and the parser that reads its
    requests one after another (it holds the bytes read ahead of the next one)."""

    listener: socket.socket
    client: socket.socket
    addr: tuple
    parser: object
    idle_until: float = 0.0
    # Close after the next answer: long requests began in this process while it was
    # kept (HybridWorker._serve), and the client's next connection may land elsewhere.
    move: bool = False

    def buffered(self) -> bool:
        """Whether the next request has already been read, in part (pipelined)."""
        buf = self.parser.unreader.buf
        buf.seek(0, io.SEEK_END)
        return buf.tell() > 0


class RawBody:
    """A long request's body of known length (Content-Length), read with ``recv_into``
    straight into the caller's buffer: what gunicorn already read ahead first (its
    unreader's and its body's buffers), then the socket, up to the end of the body.

    gunicorn's own path (``wsgi.input``) makes a new bytes object per ``recv`` and copies
    each byte through two ``BytesIO`` more before werkzeug copies it into the
    application's buffer; for a large upload the kernel zeroing those fresh pages cost
    more CPU than the copies (bench/README.md, "the upload's body from the socket").
    Each read fills the buffer (several ``recv_into`` if the bytes arrive in pieces), so
    a 4 MiB read re-takes the GIL as few times as the socket allows. gunicorn's
    ``LengthReader.length`` is kept in step, so ``wsgi.input`` may still read the rest.

    :meth:`readinto` returns 0 at the end of the body, or when the client closed the
    connection before it (:attr:`remaining` then says so); a socket error (a reset, the
    worker timeout) is raised as it is."""

    def __init__(self, body, client: socket.socket):
        self.body, self.client = body, client
        self.reader: LengthReader = body.reader
        self.ahead: memoryview | None = None  # gunicorn's read-ahead, taken on first use

    @property
    def remaining(self) -> int:
        """The body's bytes not handed out yet."""
        return len(self._ahead()) + self.reader.length

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        ahead = self._ahead()
        filled = min(len(ahead), len(view))
        if filled:
            view[:filled] = ahead[:filled]
            self.ahead = ahead[filled:]
        want = min(len(view), filled + self.reader.length)
        while filled < want:
            got = self.client.recv_into(view[filled:want])
            if not got:  # the client closed the connection
                break
            filled += got
            self.reader.length -= got
        return filled

    def _ahead(self) -> memoryview:
        if self.ahead is None:
            self.ahead = memoryview(self._take_ahead())
        return self.ahead

    def _take_ahead(self) -> bytes:
        """The body's bytes gunicorn holds (its Body's, then its unreader's up to the
        body's end), taken out of its buffers."""
        body, reader = self.body, self.reader
        held = body.buf.getvalue()
        body.buf = io.BytesIO()
        unreader = reader.unreader
        ahead = unreader.buf.getvalue()
        taken = ahead[: reader.length]
        unreader.buf = io.BytesIO()
        unreader.buf.write(ahead[len(taken) :])
        reader.length -= len(taken)
        return held + taken


def _lower_priority() -> None:
    """Give this thread (and the threads it starts, which inherit it) a lower CPU
    priority than the process's main thread: an upload's parse, summaries and writes
    yield a core to a predict or health check as soon as one arrives. On Linux the
    thread runs under ``SCHED_IDLE``: a waking thread of the normal policy preempts it
    at once, where with a higher nice alone the kernel (EEVDF) may first let it finish
    its slice (bench/README.md, "p99 during an upload"). It gets whatever CPU the
    service's normal threads leave, and its process's full share against other
    processes. Its nice is also ``LONG_REQUEST_NICE`` higher, which is what remains
    where the policy cannot be set; where neither can, nothing changes."""
    thread = threading.get_native_id()
    with contextlib.suppress(OSError, AttributeError):
        now = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, now + LONG_REQUEST_NICE))
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))


class HybridWorker(SyncWorker):
    """gunicorn's sync worker with keep-alive, serving long requests in a thread pool
    (module docstring)."""

    def init_process(self):
        self.prepare()
        super().init_process()

    def prepare(self) -> None:
        """The worker's own state, before gunicorn's ``init_process`` runs the loop."""
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, self.cfg.threads),
            thread_name_prefix="long-request",
            initializer=_lower_priority,
        )
        # Long requests with a body (uploads, batch predicts) in the pool: CPU-heavy, unlike
        # event streams, which mostly sleep.
        self.uploads = 0
        self._count = threading.Lock()
        self.idle: dict[socket.socket, Connection] = {}
        # Listeners whose new connections wait, while long requests run here, for
        # another process to take them: listener -> when this process accepts one.
        self.deferred: dict[socket.socket, float] = {}
        # One core left to the short requests while uploads run beside them.
        self.cores = CoreShare(lambda: self.uploads > 0)
        self.cores.start()

    def run(self):
        self.poller = selectors.DefaultSelector()
        self.poller.register(self.PIPE[0], selectors.EVENT_READ, self._woken)
        for listener in self.sockets:
            listener.setblocking(False)
            self.poller.register(listener, selectors.EVENT_READ, self._accept)
        try:
            while self.alive:
                self.notify()
                pending = []
                for key, _ in self.poller.select(self._wait_seconds()):
                    if key.data == self._accept:
                        pending.append(key.fileobj)
                    else:
                        key.data(key.fileobj)
                # New connections after the requests of kept ones, one per listener and
                # round: a process holding many connections takes new ones more slowly
                # than one holding few, which spreads the connections over the processes.
                # A process running long requests leaves them to the others first.
                for listener in pending:
                    if self._busy():
                        self._defer(listener)
                    else:
                        self._accept(listener)
                now = time.monotonic()
                self._accept_deferred(now)
                self._close_idle(now)
                if not self.is_parent_alive():
                    break
        finally:
            self._close_idle(None)
            self.poller.close()
            # Graceful stop: the streams and uploads in flight finish (gunicorn's
            # graceful_timeout bounds the wait; event streams end themselves).
            self.pool.shutdown(wait=True)

    def _wait_seconds(self) -> float:
        """Until the next heartbeat is due, or the oldest idle connection expires."""
        wait = self.timeout or 0.5
        due = [conn.idle_until for conn in itertools.islice(self.idle.values(), 1)]
        due += self.deferred.values()
        if due:
            wait = min(wait, max(0.0, min(due) - time.monotonic()))
        return wait

    def _woken(self, pipe) -> None:
        """A signal arrived (gunicorn writes to the pipe): the loop checks ``alive``."""
        try:
            os.read(pipe, 1)
        except BlockingIOError:
            pass

    def _accept(self, listener) -> None:
        try:
            client, addr = listener.accept()
        except OSError as exc:  # another worker took it, or the client gave up
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        client.setblocking(True)
        util.close_on_exec(client)
        try:
            if self.cfg.is_ssl:
                client = sock.ssl_wrap_socket(client, self.cfg)
            conn = Connection(listener, client, addr, http.get_parser(self.cfg, client, addr))
        except BaseException as exc:  # noqa: BLE001 - as in _serve()
            self._failed(None, client, addr, exc)
            util.close_graceful(client)
            return
        self._serve(conn)

    def _busy(self) -> bool:
        """Whether this process runs long requests while other processes could take its
        short ones: their predicts would share its GIL (and cores) with an upload."""
        return self.uploads > 0 and self.cfg.workers > 1

    def _defer(self, listener) -> None:
        """Leave the listener's next connection to the other processes for
        :data:`ACCEPT_DEFER_SECONDS`; if none took it by then, this process does."""
        self.poller.unregister(listener)
        self.deferred[listener] = time.monotonic() + ACCEPT_DEFER_SECONDS

    def _accept_deferred(self, now: float) -> None:
        """Listeners whose deferral ended: accept what no other process took (nothing,
        mostly) and watch them again."""
        for listener, due in list(self.deferred.items()):
            if due <= now:
                del self.deferred[listener]
                self.poller.register(listener, selectors.EVENT_READ, self._accept)
                self._accept(listener)

    def _resume(self, client) -> None:
        """An idle connection became readable: its next request, or its end."""
        conn = self.idle.pop(client)
        self.poller.unregister(client)
        client.setblocking(True)
        self._serve(conn)

    def _close_idle(self, now: float | None) -> None:
        """Close the idle connections expired at ``now`` (in order), or all (``None``)."""
        while self.idle:
            client, conn = next(iter(self.idle.items()))
            if now is not None and conn.idle_until > now:
                return
            del self.idle[client]
            self.poller.unregister(client)
            util.close(client)

    def _serve(self, conn: Connection) -> None:
        """Serve the connection's requests while they are short and already sent; then
        keep it idle, hand it to a thread (a long request), or close it."""
        req = None
        try:
            while True:
                req = next(conn.parser)
                if is_long(req):
                    # A vanished client frees its thread after the worker timeout.
                    conn.client.settimeout(self.cfg.timeout or None)
                    upload = req.method != "GET"  # a body, not an event stream
                    if upload:
                        with self._count:
                            self.uploads += 1
                        self.cores.upload_started()
                    if self._busy():
                        # The kept connections move to the other processes: each one's
                        # next answer closes it, and its client connects anew.
                        for kept in self.idle.values():
                            kept.move = True
                    self.pool.submit(self._threaded, conn, req, upload)
                    return
                SHORT_REQUESTS.mark()
                if not self._respond(conn, req, keepalive=True):
                    break
                if not conn.parser.finish_body(deadline=time.monotonic() + DRAIN_SECONDS):
                    break
                if not conn.buffered():
                    self._keep(conn)
                    return
        except BaseException as exc:  # noqa: BLE001 - sorted out as the sync worker does
            self._failed(req, conn.client, conn.addr, exc)
        util.close_graceful(conn.client)

    def _keep(self, conn: Connection) -> None:
        conn.idle_until = time.monotonic() + self.cfg.keepalive
        conn.client.setblocking(False)
        self.idle[conn.client] = conn  # in expiry order: the keepalive is one for all
        self.poller.register(conn.client, selectors.EVENT_READ, self._resume)

    def _threaded(self, conn: Connection, req, upload: bool) -> None:
        try:
            self._respond(conn, req, keepalive=False)
        except BaseException as exc:  # noqa: BLE001 - as in _serve()
            self._failed(req, conn.client, conn.addr, exc)
        finally:
            util.close_graceful(conn.client)
            if upload:
                with self._count:
                    self.uploads -= 1

    def _respond(self, conn: Connection, req, *, keepalive: bool) -> bool:
        """Run the application for one request and send its answer; whether the
        connection may serve another request. (gunicorn's ``handle_request``, with
        keep-alive where the worker allows it.)"""
        environ: dict = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            started = datetime.now()
            resp, environ = wsgi.create(
                req, conn.client, conn.addr, conn.listener.getsockname(), self.cfg
            )
            self.nr += 1
            if self.nr >= self.max_requests:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            if not keepalive and isinstance(getattr(req.body, "reader", None), LengthReader):
                # A long request (its connection closes after it): its body may be read
                # from the socket straight into the application's buffer.
                environ[RAW_BODY] = RawBody(req.body, conn.client)
            room = len(self.idle) < self.cfg.worker_connections
            if not (keepalive and self.alive and self.cfg.keepalive and room) or conn.move:
                resp.force_close()
            answer = self.wsgi(environ, resp.start_response)
            try:
                if isinstance(answer, environ["wsgi.file_wrapper"]):
                    resp.write_file(answer)
                else:
                    for chunk in answer:
                        resp.write(chunk)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - started)
                if hasattr(answer, "close"):
                    answer.close()
            return not resp.should_close()
        except OSError:
            raise  # the client's socket: _failed() sorts it out
        except (Exception, SystemExit):
            if resp is not None and resp.headers_sent:
                # Half an answer is out (SystemExit: the worker timed out): no error
                # answer can follow on this connection, which closes.
                self.log.exception("Error handling request")
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:  # noqa: BLE001 - a hook must not break the answer
                self.log.exception("Exception in post_request hook")

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


class AccessLogger(Logger):
    """gunicorn's Logger, writing the access line of its default format from the few
    fields that format uses. gunicorn's own builds every atom of every request (one per
    request header, response header and environ variable, each escaped) for each line:
    about 4% of a one-row predict's time in a worker (bench/README.md). Any other
    ``access_log_format`` goes through gunicorn's."""

    def access(self, resp, req, environ, request_time):
        if self.cfg.access_log_format != COMBINED:
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return None
        sent = getattr(resp, "sent", None)
        status = resp.status
        fields = {
            "h": environ.get("REMOTE_ADDR", "-"),
            "l": "-",
            "u": self._get_user(environ) or "-",
            "t": self.now(),
            "r": f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}",
            "s": status.split(None, 1)[0] if isinstance(status, str) else status,
            "b": str(sent) if sent is not None else "-",
            "f": environ.get("HTTP_REFERER", "-"),
            "a": environ.get("HTTP_USER_AGENT", "-"),
        }
        for name in ("u", "r", "f", "a"):  # what the client sent, quoted as gunicorn does
            if '"' in fields[name]:
                fields[name] = fields[name].replace('"', '\\"')
        try:
            self.access_log.info(COMBINED, fields)
        except Exception:  # noqa: BLE001 - as gunicorn: a log line never fails a request
            self.error(traceback.format_exc())
        return None
