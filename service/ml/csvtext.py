"""A CSV body read as its parser pulls it, every block checked before the parser sees it.

:class:`CheckedCsv` wraps a binary stream: :meth:`~CheckedCsv.head` reads ahead just
far enough for the header and the first data row (what ``tabular.read_csv`` checks
before pandas parses), then the stream hands those bytes and the rest on as pandas
asks for them, each block through :class:`~service.ml.csvcheck.CsvGuard` first. So a
body is never held whole, and a parser that stops early (pandas' ``nrows``) stops the
reading too.
"""

from __future__ import annotations

import codecs
import csv
import io
from typing import BinaryIO

from service.ml.csvcheck import CsvGuard
from service.ml.errors import DataError

BLOCK_BYTES = 256 * 1024


class CheckedCsv(io.RawIOBase):
    """The bytes of ``stream``, checked block by block (UTF-8, NUL, stray CR, BOM)."""

    def __init__(self, stream: BinaryIO, field: str = "file"):
        super().__init__()
        self.stream = stream
        self.guard = CsvGuard(field)
        self.ended = False
        self._ahead = bytearray()  # read by head(), not handed on yet

    def readable(self) -> bool:
        return True

    def head(self) -> str:
        """The body's first text (a byte-order mark dropped): at least its first two CSV
        rows whole, or all of it. A blank body is a :class:`DataError`."""
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        text, check_at = "", 0
        while not self.ended:
            block = self._block()
            self._ahead += block
            text += decoder.decode(block, final=self.ended)
            if len(text) >= check_at:  # parsed again once it doubled: linear in its length
                if _has_two_rows(text):
                    return text
                check_at = 2 * len(text)
        if not text.strip():
            raise DataError("the file is empty", "file")
        return text

    def readinto(self, buffer) -> int:
        if not self._ahead:
            self._ahead += self._block()
        size = min(len(buffer), len(self._ahead))
        buffer[:size] = self._ahead[:size]
        del self._ahead[:size]
        return size

    def drain(self) -> None:
        """Read (and check) the rest of the body."""
        self._ahead.clear()
        while not self.ended:
            self._block()

    def _block(self) -> bytes:
        if self.ended:
            return b""
        data = self.stream.read(BLOCK_BYTES)
        if data:
            self.guard.feed(data)
        else:
            self.ended = True
            self.guard.close()
        return bytes(data)


def _has_two_rows(text: str) -> bool:
    """Whether ``text`` holds its first two CSV rows whole (a third one has begun), and
    something other than blanks."""
    if not text.strip():
        return False
    count = 0
    try:
        for _ in csv.reader(io.StringIO(text), skipinitialspace=True):
            count += 1
            if count == 3:
                return True
    except csv.Error:  # in the third row (which began, so the second ended), or before
        return count >= 2
    return False
