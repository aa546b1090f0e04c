"""An upload's parts stored into PostgreSQL from a thread of lowered CPU priority (the
API's upload threads, service/server.py): the server process that does the inserts runs
at the thread's priority where this host lets it, on a connection nobody else uses."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from service.config import Settings
from service.db import session as db_session
from service.db.migrate import upgrade
from service.db.session import Database
from service.storage import BlobUpload, backend_for
from tests.support.storage import stored

DATA = bytes(range(256)) * 40  # 10,240 bytes: 11 parts of 1,000


def _scheduling(pid: int) -> tuple[int, int]:
    """(policy, nice) of a process, as /proc says."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[38]), int(fields[16])


class _Watching:
    """Stores parts through ``backend``, noting for each the server process that stored
    it and that process's scheduling at that moment; fails at part ``fail_at``."""

    def __init__(self, backend, fail_at: int | None = None):
        self.backend, self.fail_at, self.seen = backend, fail_at, []

    def write(self, session, key, index, data):
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
        self.seen.append((pid, _scheduling(pid)))
        if index == self.fail_at:
            raise OSError("the store went away")
        return self.backend.write(session, key, index, data)

    def read(self, session, key, index):
        return self.backend.read(session, key, index)

    def remove(self, key, indices):
        self.backend.remove(key, indices)


def _lowered(work) -> None:
    """Run ``work`` in a thread lowered as the API lowers its upload threads."""
    failure: list[BaseException] = []

    def run():
        from service.server import _lower_priority

        _lower_priority()
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - raised in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _may_lower(pid: int) -> bool:
    """Whether this process may lower another's priority: root, or the same user."""
    return os.geteuid() == 0 or os.stat(f"/proc/{pid}").st_uid == os.geteuid()


@pytest.fixture
def pg(postgres_url):
    upgrade(postgres_url)
    database = Database(postgres_url)
    yield database
    database.close()


def _upload(db, backend, key):
    with BlobUpload(db, backend, key, 1000, background=True) as upload:
        for start in range(0, len(DATA), 700):
            upload.write(DATA[start : start + 700])
        upload.close()
        with db.transaction() as session:
            upload.commit(session)


def _live_backends(db) -> set[int]:
    with db.transaction() as session:
        return set(session.scalars(text("SELECT pid FROM pg_stat_activity")))


def test_parts_from_a_lowered_thread_are_stored_by_a_lowered_server_process(pg, caplog):
    baseline = _pooled_scheduling(pg)
    watching = _Watching(backend_for(pg))
    with caplog.at_level(logging.INFO, logger="service.db.session"):
        _lowered(lambda: _upload(pg, watching, "low"))
    pids = {pid for pid, _ in watching.seen}
    assert len(watching.seen) == 11 and len(pids) == 1  # one connection for the upload
    (pid,) = pids
    thread_nice = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + 10)
    if _may_lower(pid):
        assert {sched for _, sched in watching.seen} == {(os.SCHED_IDLE, thread_nice)}
    else:  # the server keeps its priority, and the log says why
        assert {sched for _, sched in watching.seen} == {baseline}
        assert "keeps its CPU priority" in caplog.text
    # The connection closed with the upload: that server process serves nobody else.
    assert pid not in _live_backends(pg)
    assert _pooled_scheduling(pg) == baseline  # the pool's connections are untouched


def _pooled_scheduling(db) -> tuple[int, int]:
    with db.transaction() as session:
        return _scheduling(session.execute(text("SELECT pg_backend_pid()")).scalar())


def test_parts_from_a_normal_thread_go_through_the_pool(pg):
    baseline = _pooled_scheduling(pg)
    watching = _Watching(backend_for(pg))
    _upload(pg, watching, "normal")
    assert {sched for _, sched in watching.seen} == {baseline}
    assert {pid for pid, _ in watching.seen} <= _live_backends(pg)  # pooled, kept


@pytest.mark.parametrize("fail_at", [0, 5, 10])
def test_a_failed_lowered_upload_leaves_nothing_and_closes_its_connection(pg, fail_at):
    watching = _Watching(backend_for(pg), fail_at)
    with pytest.raises(OSError, match="went away"):
        _lowered(lambda: _upload(pg, watching, "bad"))
    assert stored(pg) == (0, 0, [])
    assert not {pid for pid, _ in watching.seen} & _live_backends(pg)


def test_a_server_process_it_may_not_lower_keeps_its_priority(pg, monkeypatch, caplog):
    """Where the operating system refuses (PostgreSQL as another user, without
    CAP_SYS_NICE), the upload goes on at the server's priority and a line says so."""

    def refused(*args):
        raise PermissionError(1, "Operation not permitted")

    def refusing_upload():  # the thread is lowered by now; the server may not be
        monkeypatch.setattr(db_session.os, "setpriority", refused)
        monkeypatch.setattr(db_session.os, "sched_setscheduler", refused)
        _upload(pg, watching, "kept")

    monkeypatch.setattr(db_session, "_NOT_SHARED", set())
    baseline = _pooled_scheduling(pg)
    watching = _Watching(backend_for(pg))
    with caplog.at_level(logging.INFO, logger="service.db.session"):
        _lowered(refusing_upload)
    monkeypatch.undo()
    assert {sched for _, sched in watching.seen} == {baseline}
    assert "keeps its CPU priority (not permitted" in caplog.text
    assert b"".join(_read(pg, "kept")) == DATA


@pytest.mark.parametrize("mode", ["nice", "off"])
def test_the_setting_chooses_what_the_server_process_gets(postgres_url, mode):
    """TRAINSERVE_UPLOAD_BACKEND_PRIORITY: "nice" gives the thread's nice alone (the
    server keeps its policy), "off" leaves the parts to the pool's connections."""
    upgrade(postgres_url)
    db = Database.of(Settings.from_env({}, database_url=postgres_url, upload_backend_priority=mode))
    try:
        baseline = _pooled_scheduling(db)
        watching = _Watching(backend_for(db))
        _lowered(lambda: _upload(db, watching, mode))
        (pid,) = {pid for pid, _ in watching.seen}
        if mode == "off":
            assert {sched for _, sched in watching.seen} == {baseline}
            assert pid in _live_backends(db)  # a pooled connection, kept
        else:
            thread_nice = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + 10)
            lowered = (os.SCHED_OTHER, thread_nice) if _may_lower(pid) else baseline
            assert {sched for _, sched in watching.seen} == {lowered}
            assert pid not in _live_backends(db)
    finally:
        db.close()


def test_an_unknown_backend_priority_is_refused():
    with pytest.raises(ValueError, match="UPLOAD_BACKEND_PRIORITY must be one of"):
        Settings.from_env({"TRAINSERVE_UPLOAD_BACKEND_PRIORITY": "low"})


def _read(db, key):
    from service.storage import read_parts

    return read_parts(db, backend_for(db), key)
