"""Bytes a CSV reader would misread or choke on, refused with the line and column they are in.

CSV parsers disagree about some bytes and fail on others (Python's ``csv`` raises on a
carriage return inside an unquoted field; pandas takes it for a line end and shifts every
later cell). Before a CSV body is parsed, :class:`CsvGuard` looks at its raw bytes, a
block at a time (so it works on a stream), with C-speed searches only:

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

    def feed(self, block: bytes) -> None:
        """Check the next bytes of the body."""
        data = self._held + block
        self._held = b""
        if data.endswith(b"\r"):
            data, self._held = data[:-1], b"\r"
        self._check(data)

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
        self._check(self._held, final=True)
        self._held = b""

    def _check(self, data: bytes, final: bool = False) -> None:
        if self.header is None:
            end = data.find(b"\n")
            if end >= 0:
                self.header = _fields(self._line_start + data[:end])
        # An ASCII block (most CSV) is valid UTF-8 and holds no byte-order mark: unless a
        # character was cut at the previous block's end, it skips the decoder.
        ascii_only = data.isascii() and not self._decoder.getstate()[0]
        if not ascii_only:
            try:
                self._decoder.decode(data, final)
            except UnicodeDecodeError as exc:
                self._refuse(data, exc.start, "is not UTF-8 text (invalid byte)")
        start = 0 if _suspect(data, ascii_only) else len(data)
        while True:
            found = _SUSPECT.search(data, start)
            if found is None:
                break
            at = found.start()
            what = found.group()
            if what == BOM:
                if self._offset + at > 0:
                    self._refuse(data, at, "has a byte-order mark (U+FEFF) after the start")
            elif what == b"\x00":
                self._refuse(data, at, "has a NUL byte (is it a binary file?)")
            elif (self._quotes + data.count(b'"', 0, at)) % 2 == 0:
                self._refuse(
                    data,
                    at,
                    "has a carriage return (CR) that does not end a line; quote the field, "
                    "or end lines with LF or CR LF",
                )
            start = at + 1
        self._advance(data)

    def _advance(self, data: bytes) -> None:
        last = data.rfind(b"\n")
        self._line_start = self._line_start + data if last < 0 else data[last + 1 :]
        self._line_start = self._line_start[-65536:]  # enough to count the fields before
        self._line += _count(data, b"\n")
        self._quotes += _count(data, b'"')
        self._offset += len(data)

    def _refuse(self, data: bytes, at: int, problem: str) -> None:
        before = data[:at]
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


def _suspect(data: bytes, ascii_only: bool = False) -> bool:
    """Whether ``data`` may hold a byte that ``_SUSPECT`` finds: byte searches, several
    times faster than the expression over a block of clean CSV (``ascii_only``: it holds
    no byte-order mark)."""
    if b"\x00" in data or (not ascii_only and BOM in data):
        return True
    return b"\r" in data and data.count(b"\r") != data.count(b"\r\n")


def _count(data: bytes, byte: bytes) -> int:
    """How many times ``byte`` occurs in ``data``: numpy's vectorised comparison, about
    twice as fast as ``bytes.count`` over a large block (and without the GIL)."""
    if len(data) < 4096 or byte not in data:
        return data.count(byte) if len(data) < 4096 else 0
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == ord(byte)))


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
