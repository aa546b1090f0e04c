"""The engine's backend settings, on a real PostgreSQL and on SQLite."""

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.db.session import Database


def test_a_transaction_left_idle_past_its_timeout_is_ended_and_frees_its_rows(postgres_url):
    # A worker cut off mid-transaction: its row lock must not outlive the lease.
    stalled = Database(postgres_url, idle_transaction_timeout_s=1)
    other = Database(postgres_url)
    try:
        with other.transaction() as session:
            session.execute(text("CREATE TABLE t (id int PRIMARY KEY, v int)"))
            session.execute(text("INSERT INTO t VALUES (1, 0)"))
        with pytest.raises(DBAPIError), stalled.transaction() as session:
            session.execute(text("UPDATE t SET v = 1 WHERE id = 1"))  # takes the row lock
            time.sleep(2)  # idle in transaction past the timeout: the server ends it
            session.execute(text("SELECT 1"))
        started = time.monotonic()
        with other.transaction() as session:
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
            session.execute(text("UPDATE t SET v = 2 WHERE id = 1"))
        assert time.monotonic() - started < 1
        with other.transaction() as session:
            assert session.execute(text("SELECT v FROM t")).scalar() == 2
    finally:
        stalled.close()
        other.close()


def test_a_new_sqlite_database_has_large_pages_and_an_old_one_keeps_its_own(tmp_path):
    import sqlite3

    from service.db.session import SQLITE_PAGE_SIZE

    new = Database(f"sqlite:///{tmp_path / 'new.db'}")
    with new.transaction() as session:
        session.execute(text("CREATE TABLE t (v blob)"))
        session.execute(text("INSERT INTO t VALUES (zeroblob(1000000))"))
        assert session.execute(text("PRAGMA page_size")).scalar() == SQLITE_PAGE_SIZE == 65536
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    old_path = tmp_path / "old.db"
    with sqlite3.connect(old_path) as connection:  # made by an earlier version: 4 KiB pages
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (v int)")
    old = Database(f"sqlite:///{old_path}")
    with old.transaction() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        assert session.execute(text("PRAGMA page_size")).scalar() == 4096
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 1
