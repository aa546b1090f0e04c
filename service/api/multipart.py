"""A ``multipart/form-data`` body read as it arrives, its file part a stream.

werkzeug's form parser (``request.files``) spools a file part to a temporary file before
the view sees it: a multi-GB upload was written to disk, then read again. Here the body
is decoded by werkzeug's sans-I/O :class:`~werkzeug.sansio.multipart.MultipartDecoder`,
a chunk at a time from the request's stream:

- :meth:`StreamingForm.open` reads the parts before the file part (their text fields
  into :attr:`StreamingForm.fields`) and stops at the file part's start;
- :meth:`StreamingForm.read` gives the file part's bytes as they arrive (the view's
  reader parses them as it reads);
- once the file part ends, the parts after it are read (``curl -F file=@x -F name=y``
  sends the file first): their fields join :attr:`StreamingForm.fields`.

Memory: one chunk of the body, plus the text fields (at most ``max_field_bytes`` in all,
else 413). Any other file part's bytes are skipped; a malformed body is a 400.
"""

from __future__ import annotations

import io

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from service.usecases.errors import InvalidRequest

CHUNK = 1024 * 1024
MAX_PARTS = 1000


class StreamingForm(io.RawIOBase):
    """The form of one request; the file part named ``file_field`` read as a stream."""

    def __init__(self, stream, boundary: bytes, *, max_field_bytes: int, file_field: str = "file"):
        super().__init__()
        self.stream, self.file_field, self.max_field_bytes = stream, file_field, max_field_bytes
        self.decoder = MultipartDecoder(boundary, max_parts=MAX_PARTS)
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self._field: str | None = None  # the text field being read
        self._value = bytearray()
        self._field_bytes = 0
        self._in_file = False
        self._ended = False
        self._pending = bytearray()

    def readable(self) -> bool:
        return True

    def open(self) -> bool:
        """Read up to the file part; whether the form has one."""
        while not self._ended:
            event = self._next()
            if isinstance(event, File) and event.name == self.file_field and self.filename is None:
                self.filename, self._in_file = event.filename, True
                return True
            self._take(event)
        return False

    def read(self, size: int = -1) -> bytes:
        """The file part's next bytes (``b""`` at its end; all of them for ``size`` < 0)."""
        whole = size is None or size < 0
        while self._in_file and (whole or len(self._pending) < size):
            event = self._next()
            if not isinstance(event, Data):  # pragma: no cover - the decoder's order
                raise InvalidRequest("the multipart body is malformed", "file")
            self._pending += event.data
            if not event.more_data:
                self._in_file = False
                self.finish()
        if whole:
            size = len(self._pending)
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def finish(self) -> None:
        """Read the rest of the body (what is left of the file part is skipped), so that
        :attr:`fields` holds the fields after the file too."""
        while self._in_file:
            event = self._next()
            if isinstance(event, Data) and not event.more_data:
                self._in_file = False
        while not self._ended:
            self._take(self._next())

    def _take(self, event) -> None:
        if isinstance(event, Field):
            if event.name in self.fields:  # which of the two was meant is unknown
                raise InvalidRequest("is given twice in the form; give it once", event.name)
            self._field, self._value = event.name, bytearray()
        elif isinstance(event, File):
            if event.name == self.file_field:
                raise InvalidRequest("the form has two file parts; send one", event.name)
            self._field = None  # a file part of another name: its bytes are skipped
        elif isinstance(event, Data) and self._field is not None:
            self._field_bytes += len(event.data)
            if self._field_bytes > self.max_field_bytes:
                raise RequestEntityTooLarge(
                    f"The form's text fields are larger than {self.max_field_bytes} bytes."
                )
            self._value += event.data
            if not event.more_data:
                self.fields[self._field] = self._value.decode("utf-8", "replace")
                self._field = None
        elif isinstance(event, Epilogue):
            self._ended = True

    def _next(self):
        try:
            while True:
                event = self.decoder.next_event()
                if not isinstance(event, NeedData):
                    return event
                data = self.stream.read(CHUNK)
                self.decoder.receive_data(bytes(data) if data else None)
        except ValueError as exc:
            raise InvalidRequest(f"the multipart body is malformed: {exc}", "file") from None
