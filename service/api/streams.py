"""Uploaded tables read as streams: counted against the upload limit as they are read.

The body decorator (``service.api.body``) hands a view the body of a table upload (CSV,
Parquet, JSON Lines) or a form's file part as a binary stream; :func:`upload_stream`
wraps it so that a body without a Content-Length (chunked) is refused with a 413 as soon
as it passes the limit, and :func:`file_format` tells a form's file's format by its name.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import IO

from werkzeug.exceptions import RequestEntityTooLarge

from service.api.body import MULTIPART, TABLES, Body, filename_stem, form_name
from service.usecases.datasets import TableUpload

CHUNK = 1024 * 1024


class UploadStream(io.RawIOBase):
    """A body or file stream, read in chunks and counted against the upload limit."""

    def __init__(self, stream: IO[bytes], limit: int):
        super().__init__()
        self.stream, self.limit, self.read_bytes = stream, limit, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(CHUNK if size is None or size < 0 else size)
        self._counted(len(data))
        return data

    def readinto(self, buffer) -> int:
        """Into the caller's buffer (the body stream's own ``readinto``: no copy)."""
        return self._counted(self.stream.readinto(buffer) or 0)

    def _counted(self, size: int) -> int:
        self.read_bytes += size
        if self.read_bytes > self.limit:
            raise RequestEntityTooLarge(
                f"The body is larger than the upload limit of {self.limit} bytes."
            )
        return size


def upload_stream(stream: IO[bytes], limit: int) -> UploadStream:
    """The stream of an upload, under ``limit`` bytes (its Content-Encoding was checked
    when the body was read: ``body.check_encoding``)."""
    return UploadStream(stream, limit)


def file_format(filename: str | None) -> str:
    """A form's file's table format by its name: ``.parquet``, ``.jsonl``/``.ndjson``, else
    CSV (``.gz`` and ``.zst`` suffixes aside: compression is recognised by content)."""
    name = (filename or "").lower()
    for suffix in (".gz", ".gzip", ".zst", ".zstd"):
        name = name.removesuffix(suffix)
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "csv"


def uploaded_table(
    body: Body,
    limit: int,
    *,
    name: str | None = None,
    column_types: dict | None = None,
    check_form: Callable[[Mapping[str, str]], None] | None = None,
) -> TableUpload:
    """A table body (CSV, Parquet, JSON Lines) or a form's file part as a table to store,
    read under ``limit`` bytes. A form's ``name`` field comes before ``name``, and the
    file's stem after it; a form's file's format is told by its name. (A form's fields
    may follow its file: the name is read once the file has been, and ``check_form``,
    if given, is called with every field then, before anything is stored.)"""
    stream = upload_stream(body.stream, limit)
    if body.media_type != MULTIPART:
        return TableUpload(name, stream, TABLES[body.media_type], column_types=column_types)

    def named() -> str:
        body.complete()
        if check_form is not None:
            check_form(body.form)
        return form_name(body.form.get("name")) or name or filename_stem(body.filename)

    return TableUpload(
        None, stream, file_format(body.filename), column_types=column_types, named=named
    )
