"""Bytes a CSV reader would misread or choke on, refused with the line and column they are in.

CSV parsers disagree about some bytes and fail on others (Python's ``csv`` raises on a
carriage return inside an unquoted field; pandas takes it for a line end and shifts every
later cell). Before a CSV body is parsed, :class:`CsvGuard` looks at its raw bytes, a
block at a time (so it works on a stream; a block may be a range of a reader's buffer,
searched where it lies: ``feed(buffer, start, end)``), with C-speed searches only:

- invalid UTF-8 anywhere;
- a NUL byte (a binary file sent as CSV);
- a byte-order mark anywhere but at the very start (two files joined together);
- a carriage return that does not end a line (CR LF) outside a quoted field. Lines may
  end with LF or CR LF, mixed; a quoted field may hold CR and LF (RFC 4180).

Each is a :class:`DataError` whose message names the line (1 is the header) and the
column (by name, from the header, when the line is a data line), and whose field is that
column's name (``file`` for the header line).
"""

from __future__ import annotations

import codecs
import re

import numpy as np

from service.ml.errors import DataError

BOM = b"\xef\xbb\xbf"
_SUSPECT = re.compile(rb"\x00|\xef\xbb\xbf|\r(?!\n)")
_LINE_START = 65536  # the bytes of the current line kept (to name a byte's column)


class CsvGuard:
    """Checks consecutive blocks of one CSV body (:meth:`feed`, then :meth:`close`)."""

    def __init__(self, field: str = "file"):
        self.field = field
        self.header: list[str] | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._offset = 0  # bytes checked before the current block
        self._line = 1  # line number at the start of the current block
        self._line_start = b""  # the current line's bytes before the block (for columns)
        self._quotes = 0  # quote characters seen before the block (parity: inside a field)
        self._held = b""  # a trailing CR, kept until the next block says whether LF follows

    def feed(self, block, start: int = 0, end: int | None = None) -> None:
        """Check the next bytes of the body: ``block`` (bytes or a bytearray), or only its
        bytes from ``start`` to ``end``, checked where they lie (a reader's buffer is not
        copied)."""
        if isinstance(block, memoryview):
            block = block.tobytes()  # its methods cannot search a range
        end = len(block) if end is None else end
        if start >= end:
            return
        if self._held:
            self._held = b""
            if block[start] != 0x0A:  # the held CR does not end a line (rare): as before
                self.feed(b"\r" + bytes(block[start:end]))
                return
            self._check(b"\r\n", 0, 2)
            start += 1
        if block[end - 1] == 0x0D:
            end -= 1
            self._held = b"\r"
        self._check(block, start, end)

    @property
    def quotes(self) -> int:
        """The quote characters (``"``) in the bytes checked so far."""
        return self._quotes

    @property
    def open_quote(self) -> bool:
        """Whether the bytes so far end inside a quoted field (an odd number of quotes)."""
        return self._quotes % 2 == 1

    def close(self) -> None:
        """The body ended: check what was held back, and that no UTF-8 sequence is cut."""
        held, self._held = self._held, b""
        self._check(held, 0, len(held), final=True)

    def _check(self, data, start: int, end: int, final: bool = False) -> None:
        """Check ``data[start:end]`` (bytes or a bytearray, searched in place)."""
        if self.header is None:
            newline = data.find(b"\n", start, end)
            if newline >= 0:
                self.header = _fields(self._line_start + bytes(data[start:newline]))
        # An ASCII block (most CSV) is valid UTF-8 and holds no byte-order mark: unless a
        # character was cut at the previous block's end, it skips the decoder.
        ascii_only = _isascii(data, start, end) and not self._decoder.getstate()[0]
        if not ascii_only:
            try:
                self._decoder.decode(memoryview(data)[start:end], final)
            except UnicodeDecodeError as exc:
                self._refuse(data, start, start + exc.start, "is not UTF-8 text (invalid byte)")
        at = start if _suspect(data, start, end, ascii_only) else end
        while True:
            found = _SUSPECT.search(data, at, end)
            if found is None:
                break
            at = found.start()
            what = found.group()
            if what == BOM:
                if self._offset + at - start > 0:
                    self._refuse(data, start, at, "has a byte-order mark (U+FEFF) after the start")
            elif what == b"\x00":
                self._refuse(data, start, at, "has a NUL byte (is it a binary file?)")
            elif (self._quotes + data.count(b'"', start, at)) % 2 == 0:
                self._refuse(
                    data,
                    start,
                    at,
                    "has a carriage return (CR) that does not end a line; quote the field, "
                    "or end lines with LF or CR LF",
                )
            at += 1
        self._advance(data, start, end)

    def _advance(self, data, start: int, end: int) -> None:
        last = data.rfind(b"\n", start, end)
        # The current line's last bytes: enough to count the fields before a byte.
        if last < 0:
            tail = bytes(data[max(start, end - _LINE_START) : end])
            self._line_start = (self._line_start + tail)[-_LINE_START:]
        else:
            self._line_start = bytes(data[max(last + 1, end - _LINE_START) : end])
        self._line += _count(data, b"\n", start, end)
        self._quotes += _count(data, b'"', start, end)
        self._offset += end - start

    def _refuse(self, data, start: int, at: int, problem: str) -> None:
        before = bytes(data[start:at])
        line = self._line + before.count(b"\n")
        last = before.rfind(b"\n")
        current = self._line_start + before if last < 0 else before[last + 1 :]
        position = len(_fields(current))  # the field the byte is in, 1-based
        if line == 1 or self.header is None:
            where, field = f"line {line} (the header), column {position}", "file"
        else:
            name = self.header[position - 1] if position <= len(self.header) else None
            where = (
                f"line {line}, column {position} ({name!r})"
                if name
                else f"line {line}, column {position} (past the header's {len(self.header)})"
            )
            field = name or "file"
        raise DataError(f"the CSV {problem}: {where}", field)


def _isascii(data, start: int, end: int) -> bool:
    """Whether ``data[start:end]`` is ASCII (a range: numpy's maximum, without a copy)."""
    if start == 0 and end == len(data):
        return data.isascii()
    if end <= start:
        return True
    return int(np.frombuffer(data, np.uint8, end - start, start).max()) < 0x80


def _suspect(data, start: int, end: int, ascii_only: bool = False) -> bool:
    """Whether ``data[start:end]`` may hold a byte that ``_SUSPECT`` finds: byte searches,
    several times faster than the expression over a block of clean CSV (``ascii_only``:
    it holds no byte-order mark)."""
    if data.find(b"\x00", start, end) >= 0:
        return True
    if not ascii_only and data.find(BOM, start, end) >= 0:
        return True
    if data.find(b"\r", start, end) < 0:
        return False
    return data.count(b"\r", start, end) != data.count(b"\r\n", start, end)


def _count(data, byte: bytes, start: int, end: int) -> int:
    """How many times ``byte`` occurs in ``data[start:end]``: numpy's vectorised comparison,
    about twice as fast as ``bytes.count`` over a large block (and without the GIL)."""
    if end - start < 4096:
        return data.count(byte, start, end)
    if data.find(byte, start, end) < 0:
        return 0
    block = np.frombuffer(data, np.uint8, end - start, start)
    return int(np.count_nonzero(block == ord(byte)))


def _fields(line: bytes) -> list[str]:
    """The header's names, or the fields of a partial line (commas outside quotes)."""
    names, current, quoted = [], bytearray(), False
    for byte in line.rstrip(b"\r"):
        if byte == 0x22:
            quoted = not quoted
        elif byte == 0x2C and not quoted:
            names.append(current.decode("utf-8", "replace").strip().strip('"'))
            current = bytearray()
            continue
        current.append(byte)
    names.append(current.decode("utf-8", "replace").strip().strip('"'))
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]
    return names
