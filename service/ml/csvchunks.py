"""A CSV body parsed a chunk at a time, several chunks at once, the results in order.

pyarrow's streaming CSV reader parses one block after another in the thread that asks
for the next batch: one core, whatever the machine has. Here a reader thread reads the
body (after its header line) and cuts it into chunks of about ``CHUNK_BYTES`` that end
at a line end outside quotes (an even number of ``"`` before it: a quoted value may
hold a line break), and ``parsers`` threads parse them (``parse``: Arrow, without the
GIL), while the caller takes the results in the body's order. The threads are started
by the caller's thread, so they share its CPU priority (an upload's request thread runs
below the predicts', ``service.server``), which Arrow's own thread pool would not.

An error comes in the body's order too: a chunk's parse error (``error(exc, chunk,
rows_before)`` turns it into the caller's exception, ``rows_before`` the rows of the
chunks before it) or the stream's (a refused byte) after every chunk before it.

At most ``parsers + 1`` chunks wait for a parser and ``parsers`` are parsed at a time, so
memory is bounded by a few chunks whatever the body's size.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

CHUNK_BYTES = 16 * 1024 * 1024
READ_BYTES = 4 * 1024 * 1024
_END = object()


def parsed_chunks(
    stream,
    prefix: bytes,
    parse: Callable[[memoryview], Any],
    rows: Callable[[Any], int],
    error: Callable[[Exception, memoryview, int], Exception],
    *,
    parsers: int = 2,
) -> Iterator[Any]:
    """``parse(chunk)`` of each chunk of ``prefix`` followed by ``stream``'s bytes, in
    order; ``rows(result)`` counts a result's rows (for the next chunks' errors).
    Leaving the loop early stops the reader and the parsers."""
    reader = _ChunkReader(stream, prefix, parsers + 1)
    pool = ThreadPoolExecutor(parsers, thread_name_prefix="csv-parse")
    pending: collections.deque[tuple[Future, memoryview]] = collections.deque()
    ended = False
    rows_before = 0
    reader.start()
    try:
        while True:
            while not ended and len(pending) < parsers:
                item = reader.next()
                if item is _END:
                    ended = True
                elif isinstance(item, BaseException):
                    ended = True
                    pending.append((_failed(item), memoryview(b"")))
                else:
                    pending.append((pool.submit(parse, item), item))
            if not pending:
                return
            future, chunk = pending.popleft()
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - the caller's error, in order
                if isinstance(exc, _StreamError):
                    raise exc.error from None
                raise error(exc, chunk, rows_before) from None
            rows_before += rows(result)
            yield result
    finally:
        reader.stop()
        for future, _ in pending:
            future.cancel()
        pool.shutdown(wait=True)
        reader.join()


class _StreamError(Exception):
    """The stream's own error (a refused byte), raised as it is, in the body's order."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _failed(error: BaseException) -> Future:
    future: Future = Future()
    future.set_exception(_StreamError(error))
    return future


class _ChunkReader(threading.Thread):
    """Reads the stream, queues its line-aligned chunks (then ``_END``, or the error)."""

    def __init__(self, stream, prefix: bytes, depth: int):
        super().__init__(name="csv-chunks", daemon=True)
        self.stream, self.prefix = stream, prefix
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()

    def next(self):
        return self.queue.get()

    def stop(self) -> None:
        self.stopped.set()
        while True:  # unblock a put in progress
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break

    def run(self) -> None:
        try:
            self._read()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, in order
            self._put(exc)

    def _read(self) -> None:
        pieces, size = [self.prefix] if self.prefix else [], len(self.prefix)
        while not self.stopped.is_set():
            piece = self.stream.read(READ_BYTES)
            if piece:
                pieces.append(bytes(piece))
                size += len(piece)
                if size < CHUNK_BYTES:
                    continue
            data = b"".join(pieces)
            if not piece:  # the end: the rest is the last chunk, whole lines or not
                if data.strip():
                    self._put(memoryview(data))
                self._put(_END)
                return
            cut = line_cut(data)
            if cut == 0:  # no line end outside quotes yet: read on
                pieces, size = [data], len(data)
                continue
            self._put(memoryview(data)[:cut])
            pieces = [data[cut:]] if cut < len(data) else []
            size = len(data) - cut

    def _put(self, item) -> None:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


def line_cut(data: bytes) -> int:
    """The end of ``data``'s last line that ends outside quotes (after its ``\\n``; the
    data starts outside quotes), 0 if none does."""
    end = data.rfind(b"\n")
    quotes = data.count(b'"', 0, end) if end >= 0 else 0
    while end >= 0:
        if quotes % 2 == 0:
            return end + 1
        previous = data.rfind(b"\n", 0, end)
        quotes -= data.count(b'"', previous + 1, end)
        end = previous
    return 0
