"""A CSV body parsed a chunk at a time, several chunks at once, the results in order.

pyarrow's streaming CSV reader parses one block after another in the thread that asks
for the next batch: one core, whatever the machine has. Here a reader thread reads the
body (after its header line) and cuts it into chunks of about ``CHUNK_BYTES`` that end
at a line end outside quotes (an even number of ``"`` before it: a quoted value may
hold a line break), and ``parsers`` threads parse them (``parse``: Arrow, without the
GIL), while the caller takes the results in the body's order. The threads are started
by the caller's thread, so they share its CPU priority (an upload's request thread runs
below the predicts', ``service.server``), which Arrow's own thread pool would not.
The bytes read before the stream (``prefix``: an upload's first 4 MiB, read to infer
the types) are the first chunk when there are at least ``FIRST_CHUNK_BYTES`` of them:
the first parse starts at once, not after a whole chunk has arrived.

An error comes in the body's order too: a chunk's parse error (``error(exc, chunk,
rows_before)`` turns it into the caller's exception, ``rows_before`` the rows of the
chunks before it) or the stream's (a refused byte) after every chunk before it.

At most ``parsers + 1`` chunks wait for a parser and ``parsers`` are parsed at a time, so
memory is bounded by a few chunks whatever the body's size. A chunk is a view of a buffer
that goes back to the reader once its parse is taken (Arrow copies what it parses), so an
upload reuses a few buffers instead of allocating (and the kernel zeroing) fresh memory
for every chunk: a 16 MiB allocation is a new memory map, ~4,000 page faults.

The reader fills its buffer in place through the stream's ``fill(buffer, start, end)``
where it has one (``ingest``'s guarded CSV stream: the bytes go from the socket into the
buffer, ``service.server.RawBody``, and are checked there), else copies in what
``read`` returns. A plain upload's body is then copied once, by the kernel, between the
socket and the parse: the reader's thread spent 0.13-0.18 CPU-s per 189 MB against
0.30-0.40 through gunicorn's, werkzeug's and the stream's bytes objects (bench/README.md,
"the upload's body from the socket"); most of what is left is the first touch of the
upload's ~7 buffers (page faults), which a later upload allocates anew.
"""

from __future__ import annotations

import collections
import queue
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

CHUNK_BYTES = 16 * 1024 * 1024
READ_BYTES = 4 * 1024 * 1024
# A prefix of at least this many bytes is a chunk of its own (see ``_ChunkReader``).
FIRST_CHUNK_BYTES = 1024 * 1024
_END = object()
_NOT_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")  # what bytes.strip() keeps


def parsed_chunks(
    stream,
    prefix: bytes,
    parse: Callable[[memoryview], Any],
    rows: Callable[[Any], int],
    error: Callable[[Exception, memoryview, int], Exception],
    *,
    parsers: int = 2,
    quotes: Callable[[], int] | None = None,
) -> Iterator[Any]:
    """``parse(chunk)`` of each chunk of ``prefix`` followed by ``stream``'s bytes, in
    order; ``rows(result)`` counts a result's rows (for the next chunks' errors).
    ``quotes()``, if given, counts the ``"`` in the prefix and every byte the stream has
    returned so far (a stream that counts them anyway spares the reader a pass).
    Leaving the loop early stops the reader and the parsers."""
    reader = _ChunkReader(stream, prefix, parsers + 1, quotes)
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
            reader.release(chunk)
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
    """Reads the stream into buffers, queues its line-aligned chunks (views of them;
    then ``_END``, or the error). A chunk's buffer comes back by :meth:`release`."""

    def __init__(self, stream, prefix: bytes, depth: int, quotes: Callable[[], int] | None):
        super().__init__(name="csv-chunks", daemon=True)
        self.stream, self.prefix, self.quotes = stream, prefix, quotes
        self.quotes_cut = 0  # the quotes before the buffer's start (with ``quotes``)
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.free: queue.SimpleQueue = queue.SimpleQueue()  # buffers parsed and given back
        self.stopped = threading.Event()

    def next(self):
        return self.queue.get()

    def release(self, chunk: memoryview) -> None:
        """``chunk``'s buffer may be filled again (its parse holds no view of it)."""
        if isinstance(chunk.obj, bytearray) and len(chunk.obj) == CHUNK_BYTES + READ_BYTES:
            self.free.put(chunk.obj)

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

    def _buffer(self) -> bytearray:
        try:
            return self.free.get_nowait()
        except queue.Empty:
            return bytearray(CHUNK_BYTES + READ_BYTES)

    def _read(self) -> None:
        buffer, size = self._buffer(), 0
        if self.prefix:
            buffer, size = _filled(buffer, size, self.prefix), len(self.prefix)
        # The prefix (the bytes read to infer the types) is the first chunk if it is
        # large enough: its parse starts at once, not after a full chunk arrived.
        if size >= FIRST_CHUNK_BYTES:
            buffer, size = self._cut(buffer, size)
        fill = _filler(self.stream)
        while not self.stopped.is_set():
            if len(buffer) - size < READ_BYTES:  # a line longer than the room: grow
                buffer = _filled(buffer, size, b"", room=READ_BYTES)
            got = fill(buffer, size, size + READ_BYTES)
            if got:
                size += got
                if size < CHUNK_BYTES:
                    continue
            if not got:  # the end: the rest is the last chunk, whole lines or not
                if _NOT_BLANK.search(buffer, 0, size):  # (no copy of the chunk)
                    self._put(memoryview(buffer)[:size])
                self._put(_END)
                return
            buffer, size = self._cut(buffer, size)

    def _cut(self, buffer: bytearray, size: int) -> tuple[bytearray, int]:
        """Queue the whole lines of ``buffer``'s first ``size`` bytes (none if no line
        ends outside quotes); the buffer and size that hold the rest."""
        quotes = None if self.quotes is None else self.quotes() - self.quotes_cut
        cut = line_cut(buffer, size, quotes)
        if cut == 0:  # no line end outside quotes yet: read on (into a larger buffer)
            return buffer, size
        if quotes is not None:
            self.quotes_cut += quotes - buffer.count(b'"', cut, size)
        rest = _filled(self._buffer(), 0, memoryview(buffer)[cut:size])
        self._put(memoryview(buffer)[:cut])
        return rest, size - cut

    def _put(self, item) -> None:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


def _filled(buffer: bytearray, size: int, piece, room: int = 0) -> bytearray:
    """``buffer`` (or a larger copy of its first ``size`` bytes) with ``piece`` after them,
    and at least ``room`` bytes free after those."""
    end = size + len(piece)
    if end + room > len(buffer):
        larger = bytearray(max(end + room, 2 * len(buffer)))
        larger[:size] = memoryview(buffer)[:size]
        buffer = larger
    buffer[size:end] = piece
    return buffer


def _filler(stream) -> Callable[[bytearray, int, int], int]:
    """``fill(buffer, start, end)``: reads the stream's next bytes into ``buffer[start:end]``
    (at most), returns how many, 0 at the end. A stream's own ``fill`` (``ingest``'s
    guarded CSV: read into the buffer and checked there, no bytes object per read), else
    its ``read``, copied in."""
    if hasattr(stream, "fill"):
        return stream.fill

    def read(buffer: bytearray, start: int, end: int) -> int:
        piece = stream.read(end - start)
        buffer[start : start + len(piece)] = piece
        return len(piece)

    return read


def line_cut(data: bytes | bytearray, size: int | None = None, quotes: int | None = None) -> int:
    """The end of the last line of ``data`` (its first ``size`` bytes) that ends outside
    quotes (after its ``\\n``; the data starts outside quotes), 0 if none does.
    ``quotes``, if known, is the count of ``"`` in those bytes: then only the last lines
    are searched, not the whole of them."""
    size = len(data) if size is None else size
    end = data.rfind(b"\n", 0, size)
    if end < 0:
        return 0
    if quotes is not None:
        quotes -= data.count(b'"', end + 1, size)
    elif data.find(b'"', 0, end) < 0:  # no quote before it (memchr: cheap)
        return end + 1
    else:
        quotes = data.count(b'"', 0, end)
    while end >= 0:
        if quotes % 2 == 0:
            return end + 1
        previous = data.rfind(b"\n", 0, end)
        quotes -= data.count(b'"', previous + 1, end)
        end = previous
    return 0
