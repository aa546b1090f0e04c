"""A core left to the short requests while an upload runs beside them.

An upload's threads (the request's, the CSV reader's and parsers', the summaries',
the Parquet writer's, the part store's) run under ``SCHED_IDLE`` (``service.server``),
so a predict that wakes preempts them. On a machine of few cores that leaves costs:
the predict runs on a core whose private cache the upload just filled, and under the
kernel's default preemption model (``PREEMPT_NONE``) a thread inside a system call (a
4 MiB ``recv``, a page fault, a write into the page cache) gives its core up only at the
call's next preemption point. Keeping the upload off one core while predicts arrive
measured better on 2 cores, alternated under load (bench/README.md, "A core left to the
predicts"): the one-row p99 during a 2 GB upload 3.6–4.3 ms against 4.8–5.5 with the
upload pinned for its whole length, and a median of 6.3 against 7.1 ms with this
watcher, on a busier machine.

So, while a process runs long requests with a body, a thread of its own
(:class:`CoreShare`) watches when any process of the server last answered short
requests (:data:`SHORT_REQUESTS`, shared numbers). While the last two were less than
:data:`RECENT_SECONDS` ago, every thread of the process except the main one (which
serves the short requests) may run on every allowed CPU but one; otherwise on all of
them again. New threads inherit the narrower set from the thread that starts them; the
watcher applies it again every :data:`WATCH_SECONDS` to the threads that appeared since.
With one allowed CPU nothing changes. An upload with no predicts beside it keeps every
core; one with predicts beside it gets one core fewer, and takes longer.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import threading
import time

# A short request answered less than this long ago keeps a core free of the uploads.
RECENT_SECONDS = 1.0
# How often the watcher looks, while this process runs uploads.
WATCH_SECONDS = 0.02


class SharedClock:
    """The two latest ``time.monotonic()`` marks, shared by the processes forked after
    it was made (an anonymous shared mapping of one page): gunicorn's master imports
    this module, through the worker class, before it forks the workers. Two marks, so
    that a lone request now and then (a liveness probe every 10 s) takes no core from
    an upload: only requests at least every :data:`RECENT_SECONDS` do."""

    _FORMAT = "dd"

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, struct.calcsize(self._FORMAT))

    def mark(self) -> None:
        """A short request now. (Two processes marking at once may lose one mark: at
        worst the narrowing starts a request later.)"""
        latest, _ = self._marks()
        struct.pack_into(self._FORMAT, self._map, 0, time.monotonic(), latest)

    def _marks(self) -> tuple[float, float]:
        """The latest mark and the one before (0.0 before there were any);
        ``time.monotonic()``'s clock is one for all the processes of a machine."""
        return struct.unpack_from(self._FORMAT, self._map, 0)

    def recent(self, seconds: float) -> bool:
        """Whether the two latest marks are both less than ``seconds`` old."""
        _, before = self._marks()
        return time.monotonic() - before < seconds


#: When any process of this API server last answered a short request.
SHORT_REQUESTS = SharedClock()


def _threads() -> list[int]:
    """The native ids of this process's threads, its main thread left out."""
    main = os.getpid()
    with contextlib.suppress(OSError):
        return [int(tid) for tid in os.listdir("/proc/self/task") if int(tid) != main]
    return []


def _set_affinity(tids: list[int], cpus: set[int]) -> None:
    for tid in tids:
        # A thread may have ended since it was listed.
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


class CoreShare:
    """Keeps one allowed CPU free of this process's other threads while its long
    requests run beside short ones (module docstring).

    Parameters
    ----------
    busy:
        Whether the process runs long requests with a body now.
    clock:
        When a short request was last answered.
    """

    def __init__(self, busy, clock: SharedClock = SHORT_REQUESTS) -> None:
        self._busy = busy
        self._clock = clock
        self._wake = threading.Event()
        self._all = _allowed()
        self._narrow = set(sorted(self._all)[:-1])
        self.narrowed = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Watch from now on, in a daemon thread (nothing to do with one CPU)."""
        if self._narrow and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="core-share", daemon=True)
            self._thread.start()

    def upload_started(self) -> None:
        """A long request with a body began: watch until none is left."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._busy():
                self.step()
                time.sleep(WATCH_SECONDS)
            self.step()

    def step(self) -> None:
        """Narrow or widen the other threads' CPUs by what the clock says now."""
        narrow = self._busy() and self._clock.recent(RECENT_SECONDS)
        if narrow:
            _set_affinity(_threads(), self._narrow)
        elif self.narrowed:
            _set_affinity(_threads(), self._all)
        self.narrowed = narrow


def _allowed() -> set[int]:
    with contextlib.suppress(AttributeError, OSError):
        return os.sched_getaffinity(0)
    return set()
