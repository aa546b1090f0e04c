"""service.cores: an upload's threads keep off one CPU while short requests arrive."""

from __future__ import annotations

import os
import threading
import time

from service import cores


class FakeClock:
    def __init__(self):
        self.now_recent = False

    def recent(self, seconds: float) -> bool:
        return self.now_recent


def _affinity(tid: int) -> set[int]:
    return os.sched_getaffinity(tid)


def test_the_shared_clock_is_shared_by_forked_processes_and_wants_two_marks():
    clock = cores.SharedClock()
    assert not clock.recent(1.0)
    pid = os.fork()
    if pid == 0:  # the child marks twice, as two short requests would
        clock.mark()
        clock.mark()
        os._exit(0)
    os.waitpid(pid, 0)
    assert clock.recent(1.0)
    assert not clock.recent(0.0)
    lone = cores.SharedClock()
    lone.mark()  # one probe now and then takes no core
    assert not lone.recent(1.0)


def test_other_threads_narrow_while_short_requests_arrive_and_widen_after():
    allowed = os.sched_getaffinity(0)
    clock, busy = FakeClock(), [True]
    share = cores.CoreShare(lambda: busy[0], clock)
    started, stop = threading.Event(), threading.Event()
    tids: list[int] = []

    def upload():
        tids.append(threading.get_native_id())
        started.set()
        stop.wait()

    thread = threading.Thread(target=upload)
    thread.start()
    started.wait()
    try:
        share.step()  # busy, no short requests: every CPU
        assert _affinity(tids[0]) == allowed and not share.narrowed
        clock.now_recent = True
        share.step()
        if len(allowed) < 2:  # nothing to leave free on one CPU
            assert _affinity(tids[0]) == allowed
            return
        narrow = set(sorted(allowed)[:-1])
        assert share.narrowed and _affinity(tids[0]) == narrow
        assert _affinity(os.getpid()) == allowed  # the main thread serves the short ones
        clock.now_recent = False
        share.step()
        assert not share.narrowed and _affinity(tids[0]) == allowed
        clock.now_recent, busy[0] = True, False
        share.step()  # no upload left: nothing narrows
        assert _affinity(tids[0]) == allowed
    finally:
        cores._set_affinity([os.getpid(), *cores._threads()], allowed)
        stop.set()
        thread.join()


def test_the_watcher_follows_the_uploads(monkeypatch):
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        share = cores.CoreShare(lambda: True, FakeClock())
        share.start()
        assert share._thread is None  # one CPU: no watcher at all
        return
    monkeypatch.setattr(cores, "WATCH_SECONDS", 0.005)
    clock, busy = FakeClock(), [False]
    clock.now_recent = True
    share = cores.CoreShare(lambda: busy[0], clock)
    share.start()
    busy[0] = True
    share.upload_started()
    deadline = time.monotonic() + 5
    while not share.narrowed and time.monotonic() < deadline:
        time.sleep(0.005)
    assert share.narrowed
    watcher = share._thread.native_id
    assert _affinity(watcher) == set(sorted(allowed)[:-1])
    busy[0] = False
    while share.narrowed and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not share.narrowed and _affinity(watcher) == allowed
