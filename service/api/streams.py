"""Request bodies read as streams: an upload of any size is never whole in memory.

:func:`upload_source` hands a view the table's bytes as a readable binary stream: the
body itself for ``text/csv``, Parquet or JSON Lines, or the ``file`` part of a
``multipart/form-data`` form, decoded as it arrives (werkzeug's sans-IO multipart
decoder) instead of being spooled whole first. Form fields before the file are read
first; those after it once the file has been consumed (:meth:`MultipartUpload.fields`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

from flask import request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import (
    NEED_DATA,
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
)

from service.errors import UnsupportedMediaType
from service.usecases.errors import InvalidRequest

CHUNK = 1024 * 1024
MAX_FIELD_BYTES = 1024 * 1024
TABLE_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/jsonlines": "jsonl",
}


class BodyStream(io.RawIOBase):
    """The request body, read in chunks and counted against the upload limit."""

    def __init__(self, limit: int):
        super().__init__()
        self.stream = request.stream
        self.limit = limit
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(CHUNK if size is None or size < 0 else size)
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            raise RequestEntityTooLarge(
                f"The body is larger than the upload limit of {self.limit} bytes."
            )
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def body_source(limit: int) -> tuple[BodyStream, str]:
    """The raw body as a stream and the table format its Content-Type names."""
    _check_encoding()
    request.max_content_length = limit
    fmt = TABLE_TYPES.get(request.mimetype)
    if fmt is None:
        raise UnsupportedMediaType(f"Content-Type {request.mimetype!r} is not a table format")
    return BodyStream(limit), fmt


def _check_encoding() -> None:
    # gzip and zstd are recognised by their first bytes; anything else cannot be read.
    encoding = (request.headers.get("Content-Encoding") or "identity").lower()
    if encoding not in ("identity", "gzip", "x-gzip", "zstd"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not accepted; use gzip, zstd or none"
        )


@dataclass
class MultipartUpload(io.RawIOBase):
    """A ``multipart/form-data`` body: small fields collected, one file part streamed."""

    body: BodyStream
    decoder: MultipartDecoder
    file_field: str = "file"
    values: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    file_headers: Headers | None = None
    _in_file: bool = False
    _file_done: bool = False
    _pending: bytes = b""
    _current: str | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _done: bool = False

    def __post_init__(self):
        super().__init__()

    def readable(self) -> bool:
        return True

    def _events(self):
        while True:
            event = self.decoder.next_event()
            if event is NEED_DATA:
                if self._done:
                    return
                chunk = self.body.read(CHUNK)
                if not chunk:
                    self._done = True
                    self.decoder.receive_data(None)
                else:
                    self.decoder.receive_data(chunk)
                continue
            yield event
            if isinstance(event, Epilogue):
                return

    def open_file(self) -> bool:
        """Read up to the file part; ``False`` if the form has none."""
        self._iterator = self._events()
        for event in self._iterator:
            if isinstance(event, File) and event.name == self.file_field:
                self.filename = event.filename
                self.file_headers = event.headers
                self._in_file = True
                return True
            self._collect(event)
        return False

    def _collect(self, event) -> None:
        if isinstance(event, Field):
            self._current, self._buffer = event.name, bytearray()
        elif isinstance(event, File):
            self._current = None  # another file: ignored, reported as unknown
            self.values.setdefault(event.name, "")
        elif isinstance(event, Data) and self._current is not None:
            self._buffer += event.data
            if len(self._buffer) > MAX_FIELD_BYTES:
                raise InvalidRequest("is longer than 1 MiB", self._current)
            if not event.more_data:
                try:
                    self.values[self._current] = self._buffer.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidRequest("is not UTF-8 text", self._current) from None
                self._current = None

    def read(self, size: int = -1) -> bytes:
        if not self._in_file:
            return b""
        while not self._pending and not self._file_done:
            event = next(self._iterator, None)
            if isinstance(event, Data):
                self._pending = event.data
                self._file_done = not event.more_data
            else:
                self._file_done = True
                if event is not None:
                    self._collect(event)
        size = len(self._pending) if size is None or size < 0 else size
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def fields(self) -> dict[str, str]:
        """Every field, the ones after the file included (reads the body to its end)."""
        while self.read(CHUNK):
            pass
        for event in self._iterator:
            self._collect(event)
        return self.values

    def format(self) -> str:
        """The table format: the part's Content-Type, else its file name, else CSV."""
        kind = (self.file_headers or Headers()).get("Content-Type", "").split(";")[0].strip()
        if kind in TABLE_TYPES:
            return TABLE_TYPES[kind]
        name = (self.filename or "").lower()
        for suffix in (".gz", ".gzip", ".zst", ".zstd"):
            name = name.removesuffix(suffix)
        if name.endswith((".parquet", ".pq")):
            return "parquet"
        if name.endswith((".jsonl", ".ndjson")):
            return "jsonl"
        return "csv"


def multipart_source(limit: int) -> MultipartUpload:
    """The form of a ``multipart/form-data`` body, decoded as it streams in."""
    request.max_content_length = limit
    boundary = request.mimetype_params.get("boundary")
    if not boundary:
        raise InvalidRequest("the multipart body has no boundary", "body")
    upload = MultipartUpload(BodyStream(limit), MultipartDecoder(boundary.encode()))
    return upload


def json_field(values: dict[str, str], name: str):
    """A form field holding JSON, parsed; a 400 naming it if it is not JSON."""
    try:
        return json.loads(values[name])
    except ValueError as exc:
        raise InvalidRequest(f"is not valid JSON: {exc}", name) from None
