"""The engine and short transactions, for SQLite (embedded) and PostgreSQL alike.

SQLite gets WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` for every
transaction: a deferred read that later writes fails at once with SQLITE_BUSY,
an immediate one waits its turn.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Pages of a new SQLite database (64 KiB, SQLite's largest). An uploaded table's 4 MiB
# parts are overflow chains of pages, each copied, checksummed and framed in the WAL, then
# checkpointed: 40 parts (a 1M-row table) into a new database took 0.37-0.61 CPU-s and
# 1.0-1.2 s with SQLite's default 4 KiB pages, 0.21 CPU-s and 0.4 s with 64 KiB pages;
# a small row's commit costs 0.04 ms of CPU instead of 0.01 (bench/README.md). A database
# created before keeps its pages (changing them takes a VACUUM out of WAL mode).
SQLITE_PAGE_SIZE = 65536


def make_engine(url: str, idle_transaction_timeout_s: float | None = None) -> Engine:
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
    ):
        self.url = url
        self.engine = make_engine(url, idle_transaction_timeout_s)
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
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on exit, rolled back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def after_fork(self) -> None:
        """Forget connections inherited from the parent without closing them under it."""
        self.engine.dispose(close=False)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
