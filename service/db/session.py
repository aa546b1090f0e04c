"""The engine and short transactions, for SQLite (embedded) and PostgreSQL alike.

SQLite gets WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` for every
transaction: a deferred read that later writes fails at once with SQLITE_BUSY,
an immediate one waits its turn.

A thread running at a lower CPU priority than its process's main thread (an upload's,
``service/server.py``) writes to PostgreSQL through a :class:`ThreadConnection`: a
connection of its own whose server process is given the thread's priority where the
server runs on this host and the operating system allows it (:func:`share_priority`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Pages of a new SQLite database (64 KiB, SQLite's largest). An uploaded table's 4 MiB
# parts are overflow chains of pages, each copied, checksummed and framed in the WAL, then
# checkpointed: 40 parts (a 1M-row table) into a new database took 0.37-0.61 CPU-s and
# 1.0-1.2 s with SQLite's default 4 KiB pages, 0.21 CPU-s and 0.4 s with 64 KiB pages;
# a small row's commit costs 0.04 ms of CPU instead of 0.01 (bench/README.md). A database
# created before keeps its pages (changing them takes a VACUUM out of WAL mode).
SQLITE_PAGE_SIZE = 65536


def make_engine(
    url: str, idle_transaction_timeout_s: float | None = None, *, pooled: bool = True
) -> Engine:
    """Create the engine for ``url`` with the settings each backend needs.

    ``idle_transaction_timeout_s`` (PostgreSQL): the server ends a session of this
    engine that sits inside a transaction for longer, releasing its row locks. A worker
    cut off from the network in the middle of a transaction would otherwise hold its
    job's row until TCP keepalive gives up (hours), and the upkeep loop's requeue, and so
    the failover, would wait on that lock.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    connect_args = {}
    if idle_transaction_timeout_s and "options" not in make_url(url).query:
        milliseconds = max(1000, int(idle_transaction_timeout_s * 1000))
        connect_args["options"] = f"-c idle_in_transaction_session_timeout={milliseconds}"
    if not pooled:
        return create_engine(url, poolclass=NullPool, connect_args=connect_args)
    return create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=connect_args
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, emit BEGIN (see the "begin" hook below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Takes effect only in a database not yet written (SQLITE_PAGE_SIZE's comment).
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One engine and its session factory; create one per process (after any fork)."""

    def __init__(
        self,
        url: str,
        idle_transaction_timeout_s: float | None = None,
        *,
        storage_url: str = "",
        storage_endpoint: str = "",
        upload_backend_priority: str = "idle",
    ):
        self.url = url
        # What ThreadConnection gives the server process of a lowered thread: "idle",
        # "nice" or "off" (TRAINSERVE_UPLOAD_BACKEND_PRIORITY).
        self.upload_backend_priority = upload_backend_priority
        self.idle_transaction_timeout_s = idle_transaction_timeout_s
        self.engine = make_engine(url, idle_transaction_timeout_s)
        self._unpooled: Engine | None = None
        self._unpooled_lock = threading.Lock()
        # Where blobs' parts live (``service.storage.backend_for``): the database itself
        # unless TRAINSERVE_STORAGE_URL names an object store.
        self.storage_url, self.storage_endpoint = storage_url, storage_endpoint
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def of(cls, settings, idle_transaction_timeout_s: float | None = None) -> Database:
        """The database (and blob store) a :class:`service.config.Settings` names."""
        return cls(
            settings.database_url,
            idle_transaction_timeout_s,
            storage_url=settings.storage_url,
            storage_endpoint=settings.storage_endpoint,
            upload_backend_priority=settings.upload_backend_priority,
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on exit, rolled back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    def unpooled(self) -> Engine:
        """An engine of the same database whose connections are opened for their user
        and closed after (:class:`ThreadConnection`): a server process whose priority was
        lowered never serves the pool's other users."""
        with self._unpooled_lock:
            if self._unpooled is None:
                self._unpooled = make_engine(
                    self.url, self.idle_transaction_timeout_s, pooled=False
                )
            return self._unpooled

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def after_fork(self) -> None:
        """Forget connections inherited from the parent without closing them under it."""
        self.engine.dispose(close=False)
        self._unpooled = None

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def thread_lowered() -> bool:
    """Whether the calling thread runs at a lower CPU priority than its process's main
    thread: under ``SCHED_IDLE``, or at a higher nice (Linux keeps both per thread)."""
    try:
        if os.sched_getscheduler(0) == os.SCHED_IDLE:
            return True
        return os.getpriority(os.PRIO_PROCESS, 0) > os.getpriority(os.PRIO_PROCESS, os.getpid())
    except (OSError, AttributeError):  # not Linux
        return False


class ThreadConnection:
    """Transactions of one thread on a connection of its own, opened at the first one.

    On PostgreSQL, when the thread runs at a lower CPU priority than its process's main
    thread (an upload's threads, ``service/server.py``), the connection is opened outside
    the pool and its server process (the backend, which does the thread's inserts) is
    given the thread's priority (:func:`share_priority`; ``db.upload_backend_priority``
    "nice": its nice only); :meth:`close` closes it, so it never serves anyone else.
    Otherwise (and with "off") the transactions are the pool's, as
    :meth:`Database.transaction`'s."""

    def __init__(self, db: Database):
        self.db = db
        self.connection: Connection | None = None
        self.shared = False

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        if self.connection is None:
            mode = self.db.upload_backend_priority
            postgresql = self.db.engine.dialect.name == "postgresql"
            if not postgresql or mode == "off" or not thread_lowered():
                with self.db.transaction() as session:
                    yield session
                return
            self.connection = self.db.unpooled().connect()
            self.connection.commit()  # the connect's own implicit transaction, if any
            self.shared = share_priority(self.connection, idle=mode == "idle")
        with Session(bind=self.connection, expire_on_commit=False) as session:
            with session.begin():
                yield session

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):  # a broken connection is gone already
                self.connection.close()
            self.connection = None


_NOT_SHARED: set[str] = set()


def share_priority(connection: Connection, *, idle: bool = True) -> bool:
    """Give the PostgreSQL server process of ``connection`` the calling thread's CPU
    priority: its nice, and (``idle``) ``SCHED_IDLE`` if the thread runs under it.
    Whether it did.

    A server process under ``SCHED_IDLE`` that is preempted while it holds one of the
    server's shared locks (its WAL insertion, the commit's) makes other sessions wait
    for it until a core is free for it: on a machine whose cores are all busy that can
    be long; "nice" (``idle=False``) bounds it better and yields less.

    Only where the server process is one of this host's, seen from here: a connection
    over a Unix socket, or over loopback TCP whose client port the server reports as this
    socket's own (a server behind a port forward, in another container, is left alone).
    Lowering another user's process needs ``CAP_SYS_NICE`` (root, or PostgreSQL running
    as the service's user); without it the server keeps its priority and a log line says
    so once per reason: an upload's inserts then compete with the predicts for the cores
    at the server's priority (docs/architecture.md)."""
    row = connection.execute(text("SELECT pg_backend_pid(), inet_client_port()")).one()
    connection.commit()
    pid, client_port = row[0], row[1]
    try:
        raw = connection.connection.dbapi_connection
        with socket.socket(fileno=os.dup(raw.fileno())) as sock:
            local = sock.getsockname()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, AttributeError, ValueError) as exc:
        return _not_shared("the server process cannot be seen from here", exc)
    if sock.family == socket.AF_UNIX:
        local_port = None
    else:
        local_port = local[1]
    if comm != "postgres" or client_port != local_port:
        return _not_shared("the server process is not one of this host's", None)
    try:
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        if nice > os.getpriority(os.PRIO_PROCESS, pid):
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        if idle and os.sched_getscheduler(0) == os.SCHED_IDLE:
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:
        return _not_shared("not permitted", exc)
    return True


def _not_shared(reason: str, exc: BaseException | None) -> bool:
    if reason not in _NOT_SHARED:
        _NOT_SHARED.add(reason)
        log.info(
            "the PostgreSQL backend that stores an upload's parts keeps its CPU priority "
            "(%s%s): predicts share the cores with its inserts at that priority",
            reason,
            f": {exc}" if exc is not None else "",
        )
    return False
