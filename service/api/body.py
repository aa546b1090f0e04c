"""Request bodies: which media types an endpoint reads, how each is read, and the
OpenAPI ``requestBody`` that says so, from one declaration (``Blueprint.body``).

- ``application/json``: parsed, then loaded by the endpoint's schema (or its own loader);
  malformed JSON is a 400 that says where it breaks;
- ``text/csv`` (and with ``tables``, Parquet and JSON Lines): the view gets the body as
  a binary stream, read as the view consumes it
  (never read whole here; the upload limit applies as it is read). An upload's body
  (``tables``) is read from the socket itself where the server offers it
  (``service.server.RawBody``: a long request with a Content-Length in our worker),
  else, and always for a CSV to predict or evaluate, through werkzeug's stream;
- ``multipart/form-data``: read as it arrives (``service.api.multipart``, nothing
  spooled to disk): the view gets the file part as a binary stream, its file name and
  the fields before it; the fields after it (``curl -F file=@x -F name=y``) once the
  stream is read to its end (:meth:`Body.complete`). A form may also be turned into the
  JSON body's fields and loaded by the same schema, then.

Any other Content-Type is a 415 naming the accepted ones; so is a table body or form
whose Content-Encoding is not gzip, zstd or none (:func:`check_encoding`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from flask import current_app, request
from marshmallow import Schema
from werkzeug.exceptions import ClientDisconnected

from service.api.multipart import StreamingForm
from service.errors import UnsupportedMediaType
from service.usecases.errors import InvalidRequest

JSON = "application/json"
CSV = "text/csv"
MULTIPART = "multipart/form-data"
# Other table formats an upload may send as its body (see ``Blueprint.body(tables=True)``).
TABLES = {
    CSV: "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
}
# The environ key of a body the server lets the application read from the socket itself
# (service.server.RawBody: a long request with a Content-Length, in our gunicorn worker).
RAW_BODY = "trainserve.raw_body"


@dataclass
class Body:
    """The request body as a view receives it.

    ``data``: a JSON body loaded by the schema (a form's: see :meth:`complete`);
    ``stream``: a CSV body, or a form's file part, as a binary stream read on demand;
    ``filename`` and ``form``: a form's file name and other fields (those after the file
    part once :meth:`complete` read them).
    """

    media_type: str
    data: Any = None
    filename: str | None = None
    form: Mapping[str, str] = field(default_factory=dict)
    _file: IO[bytes] | None = field(default=None, repr=False)
    _load: Callable[[Body], Any] | None = field(default=None, repr=False)
    _body: IO[bytes] | None = field(default=None, repr=False)
    # An upload: its body may be read from the socket itself (BodyStream's ``raw``).
    _raw: bool = field(default=False, repr=False)

    def complete(self) -> Any:
        """A form's every field read (the file part's unread bytes skipped) and loaded
        into ``data``; to be called once the file part's stream was read."""
        if isinstance(self._file, StreamingForm):
            self._file.finish()
        if self._load is not None:
            self.data, self._load = self._load(self), None
        return self.data

    @property
    def stream(self) -> IO[bytes]:
        """The CSV body or the form's file, as a readable binary stream. A CSV body's
        stream is opened on first use, so a view may first raise its size limit
        (``request.max_content_length``)."""
        if self._file is not None:
            return self._file
        if self._body is None:
            # request.stream first, always: werkzeug refuses a Content-Length over the
            # limit there (413).
            stream = request.stream
            raw = request.environ.get(RAW_BODY) if self._raw else None
            self._body = BodyStream(stream, raw)
        return self._body


class BodyStream(io.RawIOBase):
    """A request's body stream (werkzeug's, which holds the body to its Content-Length
    and the size limit) read through ``readinto`` into one buffer kept between reads.
    werkzeug's own ``read`` makes a new zeroed buffer per call and copies it: two thirds
    of the CPU of reading a large body (0.34 against 0.12 CPU-s for 189 MB in 4 MiB
    reads, bench/README.md).

    ``raw``, if given, is the server's reader of the same body straight from the socket
    (``service.server.RawBody``, for an upload served in a thread of our worker): then
    ``readinto`` fills the caller's buffer from the socket, without gunicorn's and
    werkzeug's copies in between (bench/README.md, "the upload's body from the socket"),
    and a client that closes the connection (or a socket error, a timeout) before the
    body's end is werkzeug's ``ClientDisconnected``, as it is on werkzeug's stream."""

    def __init__(self, stream: IO[bytes], raw=None):
        super().__init__()
        self.stream, self.raw = stream, raw
        self.buffer = memoryview(bytearray(0))

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            if self.raw is None:
                return self.stream.read()
            size = self.raw.remaining
        if size > len(self.buffer):
            self.buffer = memoryview(bytearray(size))
        got = self.readinto(self.buffer[:size])
        return bytes(self.buffer[:got])

    def readinto(self, buffer) -> int:
        if self.raw is None:
            return self.stream.readinto(buffer) or 0
        if not self.raw.remaining or not len(buffer):
            return 0
        try:
            got = self.raw.readinto(buffer)
        except (OSError, ValueError) as exc:
            raise ClientDisconnected() from exc
        if not got:
            raise ClientDisconnected()
        return got


@dataclass(frozen=True)
class BodySpec:
    """What an endpoint reads (see ``Blueprint.body``)."""

    schema: type[Schema] | Schema
    csv: bool = False
    multipart: bool = False
    form: Callable[[Body], dict] | None = None
    load_json: Callable[[bytes], Any] | None = None
    untyped_json: bool = False
    description: str = ""
    tables: bool = False

    def media_types(self) -> tuple[str, ...]:
        tables = tuple(k for k in TABLES if k != CSV) if self.tables else ()
        return (
            (JSON,)
            + ((CSV,) if self.csv or self.tables else ())
            + tables
            + ((MULTIPART,) if self.multipart else ())
        )

    def read(self) -> Body:
        """The current request's body; 415, or 400 naming the field, when it cannot be."""
        kind = media_type(*self.media_types(), untyped_json=self.untyped_json)
        if kind == JSON:
            raw = request.get_data(cache=True)
            if self.load_json is not None:
                return Body(JSON, self.load_json(raw))
            return Body(JSON, self._schema().load(parse_json(raw)))
        check_encoding()  # a table body or a form's file, read as it is sent
        upload_limit = current_app.config.get("MAX_UPLOAD_BYTES")
        if upload_limit is not None and (self.tables or kind == MULTIPART):
            # An upload (a table body, a form's file) streams: it has its own, larger limit.
            request.max_content_length = upload_limit
        if kind in TABLES:
            return Body(kind, _raw=self.tables)  # an upload's body
        return self._read_form()

    def _read_form(self) -> Body:
        boundary = request.mimetype_params.get("boundary")
        if not boundary:  # no parts at all
            raise InvalidRequest("a CSV file is required in the form field 'file'", "file")
        form = StreamingForm(
            BodyStream(request.stream),
            boundary.encode("latin-1"),
            max_field_bytes=current_app.config.get("MAX_FORM_MEMORY_SIZE") or 500_000,
        )
        if not form.open():
            raise InvalidRequest("a CSV file is required in the form field 'file'", "file")
        body = Body(MULTIPART, filename=form.filename, form=form.fields, _file=form)
        if self.form is not None:
            body._load = lambda b: self._schema().load(self.form(b))
        return body

    def _schema(self) -> Schema:
        return self.schema() if isinstance(self.schema, type) else self.schema

    def doc(self) -> dict:
        """The OpenAPI ``requestBody`` of what :meth:`read` reads."""
        content: dict[str, Any] = {JSON: {"schema": self.schema}}
        if self.csv or self.tables:
            content[CSV] = {"schema": {"type": "string"}}
        if self.tables:
            for kind in TABLES:
                content.setdefault(kind, {"schema": {"type": "string", "format": "binary"}})
        if self.multipart:
            content[MULTIPART] = {"schema": {"type": "object"}}
        return {"required": True, "content": content, "description": self.description}


def media_type(*accepted: str, untyped_json: bool = False) -> str:
    """The request's media type if it is one of ``accepted``, else a 415 naming them.
    ``untyped_json``: a body without a Content-Type is JSON (as some clients send it)."""
    mimetype = request.mimetype
    if not mimetype and untyped_json:
        return JSON
    if mimetype not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type {mimetype or '(none)'!r} is not accepted here; use one of "
            + ", ".join(accepted)
        )
    return mimetype


def check_encoding() -> None:
    """A table body or form (an upload, a CSV to predict or evaluate) may be gzip or zstd,
    which the readers recognise by their first bytes; any other Content-Encoding is a
    415."""
    encoding = (request.headers.get("Content-Encoding") or "identity").lower()
    if encoding not in ("identity", "gzip", "x-gzip", "zstd"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not accepted; use gzip, zstd or none"
        )


def parse_json(raw: bytes) -> Any:
    """A JSON body parsed; malformed JSON is a 400 that says where it breaks."""
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}", "body") from None
    except RecursionError:
        raise InvalidRequest("the body's JSON is nested too deeply", "body") from None


def filename_stem(filename: str | None, default: str = "dataset") -> str:
    """``data/iris.csv`` (or ``iris.csv.gz``, ``iris.csv.zst``) → ``iris``: the default name
    of an uploaded file's dataset or model (control characters removed, at most 128
    characters)."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    lower = base.lower()
    for suffix in (".gz", ".gzip", ".zst", ".zstd"):
        if lower.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = "".join(c for c in stem if c.isprintable())[:128]
    return stem or default


def form_name(value: str | None, field: str = "name") -> str | None:
    """A dataset name from a form or query string, checked like the JSON one."""
    if value is None:
        return None
    if not 1 <= len(value) <= 255 or not value.isprintable():
        raise InvalidRequest("must be 1-255 printable characters", field)
    return value


def json_body() -> Any:
    """The current request's body parsed as JSON (see :func:`parse_json`)."""
    return parse_json(request.get_data(cache=True))
