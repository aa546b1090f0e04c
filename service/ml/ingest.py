"""Streaming ingestion: a CSV, Parquet or JSON Lines byte stream in, Parquet row groups out.

The table is never whole in memory. It is read a block at a time (a CSV: line-aligned
chunks parsed by ``PARSERS`` threads at once, ``csvchunks``; Parquet and JSON Lines:
pyarrow's streaming readers), each block's columns are converted to the stored types,
summarised (``ml.stats``) and written as one Parquet row group to any writable binary
file.

Types. Column types are inferred from a bounded first block (``INFER_BYTES`` of the
decompressed text, at most ``INFER_ROWS`` rows) with the rules of ``tabular`` (every
value true/false: boolean; every value a finite number: numeric; otherwise
categorical; the missing markers count as missing), or given by ``column_types``.
Later blocks must fit the inferred type; there is no silent promotion: a value that
does not fit is a :class:`DataError` naming its row, its column, the value and the type,
and the upload stores nothing. (Integers and decimals are both ``numeric``, stored as
float64; a column whose first block is numeric and that holds text further down must be
declared ``categorical`` in ``column_types``.) A column entirely missing in the first
block is categorical.

Formats: CSV (UTF-8, a byte-order mark allowed), compressed with gzip or zstd or not
(recognised by their magic bytes); Parquet (its own types: integers and floats are
numeric, booleans boolean, everything else categorical text); JSON Lines (one object
per line; numbers numeric, booleans boolean, strings categorical).

Row numbers in messages count data rows from 1 (the header is not a row). For a CSV
they are found by line, so in a file with line breaks inside quoted values they count
lines, not records.
"""

from __future__ import annotations

import collections
import csv
import io
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from service.ml.csvcheck import CsvGuard
from service.ml.csvchunks import parsed_chunks
from service.ml.errors import DataError
from service.ml.stats import TableAccumulator
from service.ml.tabular import (
    _FALSE,
    _TRUE,
    COLUMN_TYPES,
    MISSING_MARKERS,
    check_header,
    header_names,
    infer_columns,
)

INFER_BYTES = 4 * 1024 * 1024
INFER_ROWS = 100_000
# Bytes parsed at a time: fewer, larger blocks parse faster (bench/README.md).
BLOCK_BYTES = 4 * 1024 * 1024
# A conversion error is located in the last bytes read (the reader reads a few blocks ahead).
RECENT_BYTES = 64 * 1024 * 1024
# Rows per stored row group: the last one is written while the parse ends. Reading the
# 1M-row table's 16 groups into frames took 0.17-0.22 CPU-s, its 4 groups of 256k rows
# 0.14-0.25 (bench/README.md).
ROW_GROUP_ROWS = 64 * 1024
# Rows checked and summarised at a time: about one parsed CSV chunk.
CHECK_ROWS = 64 * 1024
# Threads that parse a CSV upload's chunks at once (``csvchunks``).
PARSERS = 2

FORMATS = ("csv", "parquet", "jsonl")
_ARROW_TYPES = {"numeric": pa.float64(), "boolean": pa.bool_(), "categorical": pa.string()}
_EXPECTED = {"numeric": "a number", "boolean": "true or false", "categorical": "text"}
_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class Limits:
    """What one upload may hold."""

    max_rows: int
    max_columns: int
    max_cell_chars: int = 10_000
    # Distinct values whose counts each column keeps exactly (for the dataset's columns).
    count_limit: int = 1000


@dataclass
class Ingested:
    """What was stored: the row count and each column's facts and summary."""

    n_rows: int
    columns: list[dict[str, Any]]
    types: dict[str, str]


def ingest(
    source: BinaryIO,
    sink: BinaryIO,
    *,
    fmt: str,
    limits: Limits,
    column_types: dict[str, str] | None = None,
) -> Ingested:
    """Read a table from ``source`` and write it to ``sink`` as Parquet, block by block.

    Parameters
    ----------
    source:
        A readable binary stream (``read(n)``); for Parquet it is spooled to a
        temporary file unless it can seek.
    sink:
        A writable binary file; receives one Parquet file.
    fmt:
        ``csv`` (plain, gzip or zstd), ``parquet`` or ``jsonl``.
    limits:
        Rows, columns, cell length.
    column_types:
        Column → type, overriding inference for those columns.

    Returns
    -------
    The row count and the columns as the dataset lists them (name, type, missing,
    n_unique, summary; plus exact value counts when there are at most
    ``limits.count_limit`` distinct values, and ``only_01`` for numeric columns).
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}", "format")
    if fmt == "parquet":
        blocks, types = _parquet_blocks(source, limits, column_types or {})
    elif fmt == "jsonl":
        blocks, types = _jsonl_blocks(decompressed(source), limits, column_types or {})
    else:
        blocks, types = _csv_blocks(decompressed(source), limits, column_types or {})
    stats = TableAccumulator(types, count_limit=limits.count_limit, quantile_capacity=0)
    rows = _write_groups(blocks, sink, types, limits, stats)
    if rows == 0:
        raise DataError("the file has a header but no data rows", "file")
    summary = stats.finish()
    return Ingested(
        rows, [_listed(name, kind, summary[name]) for name, kind in types.items()], types
    )


def _write_groups(
    blocks: Iterator[pa.RecordBatch],
    sink: BinaryIO,
    types: dict[str, str],
    limits: Limits,
    stats: TableAccumulator,
) -> int:
    """Write ``blocks`` to ``sink`` as Parquet row groups of about ``ROW_GROUP_ROWS``,
    every row checked and summarised first, ``CHECK_ROWS`` or so at a time. Returns the
    rows written.

    Three threads share the work: this one gathers the parsed blocks (a CSV's are parsed
    by threads of their own, Arrow without the GIL) while a second checks and summarises
    them as they come and a third writes each row group once it is whole (Arrow and
    numpy, mostly without the GIL either). The checks go in smaller steps than the row
    groups so that they start with the first rows parsed and end soon after the last:
    an upload's last row group is summarised while it is gathered, not after. The first
    error by row is raised; within one CSV chunk (``csvchunks.CHUNK_BYTES``) a value
    that does not parse comes before a check's error (an infinite number, a long cell)
    in an earlier row of the same chunk."""
    schema = pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in types.items()])
    writer = pq.ParquetWriter(
        sink,
        schema,
        # Numbers are stored plain: snappy saved ~5% of their size for ~40% of the
        # write's time (bench/README.md); text, dictionary-encoded, is compressed.
        compression={n: "none" if k == "numeric" else "snappy" for n, k in types.items()},
        use_dictionary=[name for name, kind in types.items() if kind != "numeric"],
        # Nothing reads the pages' min/max (the worker reads whole row groups): a third
        # of the write's CPU (0.21 -> 0.14 CPU-s per 1M rows).
        write_statistics=False,
    )
    checks = _Lane(lambda rows, before: _check_group(rows, types, limits, stats, before), "checks")
    writes = _Lane(lambda group, before: writer.write_table(group), "writes")
    checking, written = _Gathered(schema, CHECK_ROWS), _Gathered(schema, ROW_GROUP_ROWS)
    try:
        # The checks' error first: it names a row, and comes first by row.
        with checks, writes:
            try:
                for batch in blocks:
                    if checking.rows + checking.size + batch.num_rows > limits.max_rows:
                        raise DataError(
                            f"the file has more than the limit of {limits.max_rows} rows",
                            "file",
                        )
                    for lane, gathered in ((checks, checking), (writes, written)):
                        if gathered.add(batch):
                            lane.submit(*gathered.take())
            except DataError:
                # A value that does not parse: the rows before it may hold an earlier error.
                if checking.size:
                    checks.submit(*checking.take())
                raise
            for lane, gathered in ((checks, checking), (writes, written)):
                if gathered.size:
                    lane.submit(*gathered.take())
    finally:
        writer.close()
        # An error leaves the parse behind: stop its threads now, not when collected.
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
    return written.rows


def _check_group(group: pa.Table, types, limits: Limits, stats, before: int) -> None:
    check_cell_lengths(group, types, limits.max_cell_chars, before)
    check_finite(group, types, before)
    stats.update_arrow(group)


class _Gathered:
    """Batches gathered into tables of at least ``size`` rows (the last one smaller)."""

    def __init__(self, schema: pa.Schema, size: int):
        self.schema, self.target = schema, size
        self.batches: list[pa.RecordBatch] = []
        self.size = 0  # rows gathered, not yet taken
        self.rows = 0  # rows taken before them

    def add(self, batch: pa.RecordBatch) -> bool:
        """Whether the batches gathered so far make a table to take."""
        self.batches.append(batch)
        self.size += batch.num_rows
        return self.size >= self.target

    def take(self) -> tuple[pa.Table, int]:
        """The batches gathered as one table, and the rows before it."""
        table, before = pa.Table.from_batches(self.batches, self.schema), self.rows
        self.batches, self.rows, self.size = [], self.rows + self.size, 0
        return table, before


class _Lane:
    """``step`` run on each table in order, in a thread of its own, one table in flight:
    :meth:`submit` waits for the previous one. Leaving the block waits for the last;
    the first error (the earliest table's) is raised."""

    def __init__(self, step: Callable[[pa.Table, int], None], name: str):
        self.step = step
        self.pool = ThreadPoolExecutor(1, thread_name_prefix=f"ingest-{name}")
        self.running: Future | None = None

    def submit(self, table: pa.Table, before: int) -> None:
        self._wait()
        self.running = self.pool.submit(self.step, table, before)

    def _wait(self) -> None:
        running, self.running = self.running, None
        if running is not None:
            try:
                running.result()
            finally:
                del running  # no cycle through the future's exception and this frame

    def __enter__(self) -> _Lane:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            # An earlier table's error (it comes first by row) before this thread's own.
            self._wait()
        finally:
            self.pool.shutdown()


def _listed(name: str, kind: str, column) -> dict[str, Any]:
    """A column as the dataset lists it."""
    return {
        "name": name,
        "type": kind,
        "missing": column.missing,
        "n_unique": column.n_unique,
        "n_unique_exact": column.n_unique_exact,
        "summary": column.summary(),
        "counts": column.counts if column.counts_exact else None,
        "only_01": column.only_01,
    }


def batch_frame(batch: pa.RecordBatch | pa.Table) -> pd.DataFrame:
    """A stored block as the normalised frame ``tabular`` makes: float64, pandas
    ``boolean`` and strings, missing values as NA."""
    data = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_boolean(column.type):
            data[name] = column.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)
        elif pa.types.is_floating(column.type):
            data[name] = column.to_pandas()
        else:
            data[name] = column.to_pandas().astype("str")
    # copy=False: the columns stay separate arrays rather than being copied into one 2-D
    # block (about a tenth of a training job's encoding CPU).
    return pd.DataFrame(data, index=pd.RangeIndex(batch.num_rows), copy=False)


# --- sources ------------------------------------------------------------------------


class _Readable(io.RawIOBase):
    """A raw binary stream whose subclass defines ``read``; buffering can wrap it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Recorded(_Readable):
    """A readable stream that can un-read a prefix and remembers its recent bytes and
    how many lines came before them (to locate a bad value by row)."""

    def __init__(self, raw, prefix: bytes = b"", *, remember: bool = True):
        super().__init__()
        self.raw, self.prefix, self.remember = raw, prefix, remember
        self.recent: collections.deque[bytes] = collections.deque()
        self.recent_size = 0
        self.lines_before_recent = 0

    def read(self, size: int = -1) -> bytes:
        if self.prefix:
            data = self.prefix if size < 0 else self.prefix[:size]
            self.prefix = self.prefix[len(data) :]
        else:
            data = self.raw.read(size) if size >= 0 else self.raw.read()
            data = bytes(data or b"")
        if data and self.remember:
            self.recent.append(data)
            self.recent_size += len(data)
            while self.recent_size - len(self.recent[0]) >= RECENT_BYTES:
                old = self.recent.popleft()
                self.recent_size -= len(old)
                self.lines_before_recent += old.count(b"\n")
        return data

    def readinto(self, buffer) -> int:
        """The raw stream's ``readinto`` passed through (into the caller's buffer, no
        bytes object) once the prefix is out, when nothing is remembered."""
        if self.prefix or self.remember or not hasattr(self.raw, "readinto"):
            return super().readinto(buffer)
        return self.raw.readinto(buffer) or 0


def decompressed(source: BinaryIO, field: str = "file", max_bytes: int | None = None):
    """``source`` as plain bytes: gzip and zstd are recognised by their first bytes. Data
    that cannot be decompressed is a :class:`DataError` naming ``field``; so is more than
    ``max_bytes`` of decompressed data, where a reader's other limits (rows, a parser's
    blocks) do not bound the memory a small body may expand to."""
    head = _read_exactly(source, 4)
    chained = _Recorded(source, head, remember=False)
    if head.startswith(_GZIP) or head.startswith(_ZSTD):
        codec = "gzip" if head.startswith(_GZIP) else "zstd"
        stream = pa.CompressedInputStream(pa.PythonFile(chained, mode="r"), codec)
        return _Codec(stream, codec, field, max_bytes)
    return chained


class _Codec(_Readable):
    """A decompressing stream whose corrupt input is a DataError, not an Arrow error."""

    def __init__(self, stream, codec: str, field: str, max_bytes: int | None = None):
        super().__init__()
        self.stream, self.codec, self.field = stream, codec, field
        self.max_bytes, self.size = max_bytes, 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.stream.read(size if size >= 0 else None)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(
                f"the {self.codec} data cannot be decompressed: {exc}", self.field
            ) from None
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise DataError(
                f"decompressed, the {self.codec} data is larger than the limit of "
                f"{self.max_bytes} bytes",
                self.field,
            )
        return data


def _read_exactly(stream, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        data = stream.read(size - got)
        if not data:
            break
        parts.append(bytes(data))
        got += len(data)
    return b"".join(parts)


# --- CSV ----------------------------------------------------------------------------


class _Guarded(_Readable):
    """A CSV stream whose every block passes :class:`~service.ml.csvcheck.CsvGuard`
    (invalid UTF-8, NUL, a stray byte-order mark or carriage return: refused with line
    and column) before any parser sees it: a block ``read`` returns, or one read into
    a chunk reader's buffer by :meth:`fill` and checked there."""

    def __init__(self, raw):
        super().__init__()
        self.raw, self.guard, self.ended = raw, CsvGuard(), False

    def read(self, size: int = -1) -> bytes:
        data = bytes(self.raw.read(size) if size >= 0 else self.raw.read())
        self._checked(data, 0, len(data))
        return data

    def fill(self, buffer: bytearray, start: int, end: int) -> int:
        """Read the next bytes into ``buffer[start:end]`` (at most) and check them there:
        a plain body goes from the socket to a chunk reader's buffer without a copy
        (``csvchunks``, ``service.server.RawBody``). How many were read; 0 at the end."""
        view = memoryview(buffer)[start:end]
        got = self.raw.readinto(view) or 0  # a _Readable's: passed through, or copied in
        del view  # the buffer may be resized by its owner
        self._checked(buffer, start, start + got)
        return got

    def _checked(self, data, start: int, end: int) -> None:
        if end > start:
            self.guard.feed(data, start, end)
        elif not self.ended:
            self.ended = True
            self.guard.close()


def csv_head(stream, max_columns: int) -> tuple[io.RawIOBase, bytes, list[str]]:
    """Open a CSV body: its stream behind a :class:`CsvGuard`, its first bytes (at most
    ``INFER_BYTES``, to be replayed) and its header's names, checked."""
    stream = _Guarded(stream)
    head = _read_exactly(stream, INFER_BYTES)
    text_head = _utf8(head, cut=len(head) == INFER_BYTES)
    if not text_head.strip():
        raise DataError("the file is empty", "file")
    header = header_names(text_head.lstrip("\ufeff").split("\n", 1)[0])
    header = [name.lstrip(" ") for name in header]
    check_header(header, max_columns)
    return stream, head, header


BadValue = Callable[[str, "int | None", str, int], DataError]


def csv_batches(
    stream,
    head: bytes,
    header: list[str],
    convert_options: pacsv.ConvertOptions,
    bad_value: BadValue,
    *,
    block_size: int | None = None,
    newlines_in_values: bool = False,
) -> Iterator[pa.RecordBatch]:
    """The rows after the header of a body opened by :func:`csv_head`, typed by
    ``convert_options``. A value that does not convert is ``bad_value(column, row, value,
    rows_before)`` (``row`` from 1, ``None`` if not found); a ragged row names its line."""
    recorded = _Recorded(stream, head)
    try:
        reader = pacsv.open_csv(
            recorded,
            read_options=pacsv.ReadOptions(
                block_size=block_size or BLOCK_BYTES, column_names=header, skip_rows=1
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=newlines_in_values),
            convert_options=convert_options,
        )
    except pa.ArrowInvalid as exc:
        raise _csv_error(exc, recorded, header, bad_value, 0) from None
    yield from _batches(
        reader, lambda exc, rows: _csv_error(exc, recorded, header, bad_value, rows)
    )


def _batches(reader, error: Callable[[Exception, int], DataError]) -> Iterator[pa.RecordBatch]:
    """The batches of a pyarrow streaming reader; its ``ArrowInvalid`` is ``error(exc,
    rows read before)``."""
    rows = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise error(exc, rows) from None
        rows += batch.num_rows
        yield batch


def _csv_blocks(
    stream, limits: Limits, overrides: dict[str, str]
) -> tuple[Iterator[pa.RecordBatch], dict[str, str]]:
    stream, head, header = csv_head(stream, limits.max_columns)
    _check_overrides(overrides, header)
    # The first block, cut after its last complete line, read as text and inferred.
    cut = head.rfind(b"\n") + 1 if len(head) == INFER_BYTES else len(head)
    sample = _read_strings(head[:cut] or head, header)
    if sample.num_rows > INFER_ROWS:
        sample = sample.slice(0, INFER_ROWS)
    types = _infer(sample, header, overrides)

    def bad_value(name: str, row: int | None, value: str, before: int) -> DataError:
        where = f"row {row}" if row is not None else f"a row after row {before}"
        return DataError(
            f"column {name!r} must be {_EXPECTED[types[name]]} (its type, {types[name]}, was "
            f"inferred from the first rows; declare it in column_types to change it); {where} "
            f"has {value!r}",
            name,
        )

    return _parsed_in_threads(stream, head, header, types, bad_value), types


def _parsed_in_threads(
    stream, head: bytes, header: list[str], types: dict[str, str], bad_value: BadValue
) -> Iterator[pa.RecordBatch]:
    """The rows after the header, parsed a chunk at a time by ``PARSERS`` threads
    (``csvchunks``), typed, their text columns trimmed; a parse error names its row."""
    read_options = pacsv.ReadOptions(column_names=header, block_size=BLOCK_BYTES, use_threads=False)
    options = convert_options(types)

    def parse(chunk: memoryview) -> list[pa.RecordBatch]:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(chunk)),
            read_options=read_options,
            convert_options=options,
        )
        return [trim_strings(batch, types) for batch in table.to_batches()]

    def error(exc: Exception, chunk: memoryview, rows_before: int) -> Exception:
        if not isinstance(exc, pa.ArrowInvalid):
            return exc
        window = _Recorded(None)
        window.recent.append(b"\n" + bytes(chunk))
        window.lines_before_recent = rows_before
        return _csv_error(exc, window, header, bad_value, rows_before)

    start = head.find(b"\n") + 1  # the data after the header line
    header_quotes = head.count(b'"', 0, start)
    for batches in parsed_chunks(
        stream,
        head[start:],
        parse,
        lambda batches: sum(batch.num_rows for batch in batches),
        error,
        parsers=PARSERS,
        # The guard counts every quote it passes: the chunk reader needs not count again.
        quotes=(lambda: stream.guard.quotes - header_quotes)
        if isinstance(stream, _Guarded)
        else None,
    ):
        yield from batches


def _read_strings(data: bytes, header: list[str]) -> pa.Table:
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                null_values=list(MISSING_MARKERS),
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        window = _Recorded(None)
        window.recent.append(data)
        raise _csv_error(exc, window, header, None, 0) from None


def _infer(sample: pa.Table, header: list[str], overrides: dict[str, str]) -> dict[str, str]:
    """Each column's type by ``tabular``'s rules, decided by Arrow where its answer is
    certainly theirs (every present value true/false; every one a finite number by
    Arrow's parse, which accepts nothing pandas refuses; one character no number has),
    by ``tabular.infer_columns`` for the columns left (a tenth of the CPU, bench/README.md)."""
    if sample.num_rows == 0:
        raise DataError("the file has a header but no data rows", "file")
    types: dict[str, str] = {}
    undecided = {}
    for name in header:
        column = _lstrip(sample.column(name))
        kind = _arrow_kind(column)
        if kind is None:
            undecided[name] = column
        types[name] = kind
    if undecided:
        frame = pd.DataFrame(
            {name: column.to_pandas().astype("str") for name, column in undecided.items()},
            index=pd.RangeIndex(sample.num_rows),
        )
        _, infos = infer_columns(frame.mask(frame.isin(MISSING_MARKERS)))
        types |= {info.name: info.type for info in infos}
    return {name: overrides.get(name, kind) for name, kind in types.items()}


_MARKERS = pa.array(MISSING_MARKERS, pa.string())
_TRUTH = pa.array(sorted(_TRUE | _FALSE), pa.string())
# A character that no number pandas parses holds (digits, sign, point, exponent, white
# space, and the letters of inf, infinity and nan are all it takes).
_NOT_A_NUMBER = r"[^0-9eE+\-.\t\n\r\f\v iInNfFaAtTyY]"


def _arrow_kind(column: pa.ChunkedArray) -> str | None:
    """``column``'s type (left-trimmed text) by ``tabular``'s rules, or ``None`` where
    only pandas can say (a number Arrow does not parse: one with trailing white space)."""
    present = pc.drop_null(column)
    present = present.filter(pc.invert(pc.is_in(present, value_set=_MARKERS)))
    if len(present) == 0:
        return "categorical"
    if pc.all(pc.is_in(present, value_set=_TRUTH)).as_py():
        return "boolean"
    try:
        numbers = pc.cast(present, pa.float64())
    except pa.ArrowInvalid:
        numbers = None
    if numbers is not None and pc.all(pc.is_finite(numbers)).as_py():
        return "numeric"
    if pc.any(pc.match_substring_regex(present, _NOT_A_NUMBER)).as_py():
        return "categorical"
    return None


def _check_overrides(overrides: dict[str, str], header: list[str]) -> None:
    for name, kind in overrides.items():
        if name not in header:
            raise DataError(f"the file has no column {name!r}", f"column_types.{name}")
        if kind not in COLUMN_TYPES:
            raise DataError(f"must be one of {', '.join(COLUMN_TYPES)}", f"column_types.{name}")


def convert_options(types: dict[str, str]) -> pacsv.ConvertOptions:
    """Arrow's conversion of CSV cells to the stored types (missing markers, booleans)."""
    return pacsv.ConvertOptions(
        column_types={name: _ARROW_TYPES[kind] for name, kind in types.items()},
        null_values=list(MISSING_MARKERS),
        true_values=sorted(_TRUE),
        false_values=sorted(_FALSE),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )


def _lstrip(column):
    return pc.utf8_ltrim(column, characters=" ")


def trim_strings(batch: pa.RecordBatch, types: dict[str, str]) -> pa.RecordBatch:
    """Leading spaces go from the ``categorical`` columns of ``types`` (the others are
    left as they are), as ``tabular.read_csv`` reads with ``skipinitialspace``."""
    columns = list(batch.columns)
    changed = False
    for i, name in enumerate(batch.schema.names):
        # Most columns have no leading space: a test of the first bytes, not a trimmed copy
        # of every string (0.08 -> 0.01 CPU-s per 1M rows of 3 text columns).
        if types.get(name) == "categorical" and pc.any(pc.starts_with(columns[i], " ")).as_py():
            trimmed = _lstrip(columns[i])
            # A cell of spaces only is now empty: missing, like an empty cell.
            columns[i] = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
            changed = True
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema) if changed else batch


# Arrow names the row (from 1, counting records) when it parses in one thread.
_CONVERSION = re.compile(
    r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to (\w+): invalid value '(.*)'",
    re.DOTALL,
)
_ROW = re.compile(r"Row #(\d+): ")


def _csv_error(
    exc, recorded: _Recorded, header, bad_value: BadValue | None, rows_before: int
) -> DataError:
    message = _arrow_message(exc)
    match = _CONVERSION.search(str(exc))  # the value may hold a line break
    if "invalid UTF8" in message:
        return DataError("the file is not UTF-8 text", "file")
    ragged = _RAGGED.search(message)
    if ragged is not None:
        expected, got, line = int(ragged.group(1)), int(ragged.group(2)), ragged.group(3)
        named = _ROW.search(message)
        row = rows_before + int(named.group(1)) if named else _locate_line(recorded, line)
        where = (
            f"row {row} (line {row + 1})" if row is not None else f"a row after row {rows_before}"
        )
        return DataError(
            f"the CSV cannot be parsed: {where} has {got} fields, "
            f"{'more' if got > expected else 'fewer'} fields than the header: expected "
            f"{expected} fields",
            "file",
        )
    if match is None or bad_value is None:
        return DataError(f"the CSV cannot be parsed (after row {rows_before}): {message}", "file")
    index, value = int(match.group(1)), match.group(4)
    row = rows_before + int(match.group(2)) if match.group(2) else _locate(recorded, index, value)
    return bad_value(header[index], row, value, rows_before)


_RAGGED = re.compile(r"Expected (\d+) columns, got (\d+): (.*)")


def _locate_line(recorded: _Recorded, line: str) -> int | None:
    """The data row (from 1) of the first recent line that reads ``line``."""
    data, lines_before = _recent_lines(recorded)
    for offset, text in enumerate(data.decode("utf-8", errors="replace").split("\n")):
        if text.rstrip("\r") == line:
            return lines_before + offset
    return None


def _recent_lines(recorded: _Recorded) -> tuple[bytes, int]:
    data = b"".join(recorded.recent)
    lines_before = recorded.lines_before_recent
    if lines_before:  # the window starts inside a line: skip to the next one
        cut = data.find(b"\n") + 1
        data, lines_before = data[cut:], lines_before + 1
    return data, lines_before


def _locate(recorded: _Recorded, index: int, value: str) -> int | None:
    """The data row (from 1) of the first recent line whose field ``index`` is ``value``."""
    data, lines_before = _recent_lines(recorded)
    text = data.decode("utf-8", errors="replace")
    for offset, fields in enumerate(csv.reader(io.StringIO(text))):
        if len(fields) > index and fields[index].lstrip(" ") == value.lstrip(" "):
            return lines_before + offset  # line 0 is the header
    return None


def _utf8(data: bytes, cut: bool = False) -> str:
    """``data`` decoded; ``cut``: it is the start of a longer stream, so its last
    character may be incomplete."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if cut and exc.start >= len(data) - 3:  # a character cut at the end of the block
            return _utf8(data[: exc.start])
        line = data[: exc.start].count(b"\n")
        if line == 0:
            raise DataError(
                f"the file is not UTF-8 text (invalid byte at offset {exc.start})", "file"
            ) from None
        header = next(csv.reader(io.StringIO(data.split(b"\n", 1)[0].decode("utf-8", "replace"))))
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = data[start : exc.start].count(b",")
        name = header[column].lstrip(" ") if column < len(header) else None
        raise DataError(
            f"the file is not UTF-8 text: row {line}"
            + (f", column {name!r}," if name else "")
            + f" has an invalid byte (offset {exc.start})",
            name or "file",
        ) from None


def _arrow_message(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --- checks on each block ------------------------------------------------------------


def check_cell_lengths(batch: pa.Table, types: dict[str, str], max_chars: int, before: int):
    """Refuse a ``categorical`` cell longer than ``max_chars`` (``types`` in the batch's
    column order; ``before``: the rows before the batch)."""
    for i, (name, kind) in enumerate(types.items()):
        if kind != "categorical":
            continue
        lengths = pc.utf8_length(batch.column(i))
        longest = pc.max(lengths).as_py()
        if longest is not None and longest > max_chars:
            position = int(np.flatnonzero(lengths.to_numpy(zero_copy_only=False) > max_chars)[0])
            raise DataError(
                f"column {name!r} row {before + position + 1} has a value of {longest} "
                f"characters, more than the limit of {max_chars}",
                name,
            )


def check_finite(batch: pa.Table, types: dict[str, str], before: int, field: str = "file") -> None:
    """Refuse an infinite ``numeric`` value (``types`` in the batch's column order); the
    error's field is the column's name, or ``field[row].column`` unless ``field`` is
    ``file``, as ``tabular`` names cells."""
    for i, (name, kind) in enumerate(types.items()):
        if kind != "numeric":
            continue
        column = batch.column(i)
        # Arrow's test over the column as it is: no NumPy copy of a clean column.
        if not pc.any(pc.is_inf(column)).as_py():
            continue
        values = column.to_numpy(zero_copy_only=False)
        infinite = np.isinf(values)
        if infinite.any():
            position = int(np.flatnonzero(infinite)[0])
            row = before + position + 1
            raise DataError(
                f"column {name!r} must be a finite number; row {row} has "
                f"{str(float(values[position]))!r}",
                name if field == "file" else f"{field}[{row - 1}].{name}",
            )


# --- Parquet --------------------------------------------------------------------------


def _parquet_blocks(
    source, limits: Limits, overrides: dict[str, str]
) -> tuple[Iterator[pa.RecordBatch], dict[str, str]]:
    spooled = None
    if not (hasattr(source, "seekable") and source.seekable()):
        spooled = tempfile.TemporaryFile()  # a Parquet footer is at its end: spool to disk
        while chunk := source.read(BLOCK_BYTES):
            spooled.write(chunk)
        spooled.seek(0)
        source = spooled
    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        if spooled is not None:
            spooled.close()
        raise DataError(f"the Parquet file cannot be read: {_arrow_message(exc)}", "file") from None
    schema = parquet.schema_arrow
    try:
        check_header(list(schema.names), limits.max_columns)
        _check_overrides(overrides, list(schema.names))
    except DataError:
        if spooled is not None:
            spooled.close()
        raise
    types = {field.name: overrides.get(field.name, _kind(field.type)) for field in schema}

    def batches() -> Iterator[pa.RecordBatch]:
        rows = 0
        try:
            for batch in parquet.iter_batches(batch_size=65536):
                yield _cast_batch(batch, types, rows)
                rows += batch.num_rows
        except pa.ArrowException as exc:
            raise DataError(
                f"the Parquet file cannot be read: {_arrow_message(exc)}", "file"
            ) from None
        finally:
            if spooled is not None:
                spooled.close()

    return batches(), types


def _kind(arrow_type: pa.DataType) -> str:
    """The column type of an Arrow type: integers, floats and decimals are numeric."""
    if (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
    ):
        return "numeric"
    return "boolean" if pa.types.is_boolean(arrow_type) else "categorical"


def _cast_batch(batch: pa.RecordBatch, types: dict[str, str], before: int) -> pa.RecordBatch:
    """Columns as the stored types; a value that does not convert names its row."""
    arrays = []
    for name, kind in types.items():
        column = batch.column(name)
        target = _ARROW_TYPES[kind]
        if column.type == target:
            arrays.append(column)
            continue
        if kind == "categorical":
            arrays.append(pc.cast(column, pa.string()))
            continue
        try:
            arrays.append(pc.cast(column, target))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = column.to_pylist()
            for position, value in enumerate(values):
                try:
                    pc.cast(pa.array([value]), target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise DataError(
                        f"column {name!r} must be {_EXPECTED[kind]}; row {before + position + 1} "
                        f"has {value!r}",
                        name,
                    ) from None
            raise
    return pa.RecordBatch.from_arrays(
        arrays, schema=pa.schema([(n, _ARROW_TYPES[k]) for n, k in types.items()])
    )


# --- JSON Lines -------------------------------------------------------------------------


def _jsonl_blocks(
    stream, limits: Limits, overrides: dict[str, str]
) -> tuple[Iterator[pa.RecordBatch], dict[str, str]]:
    head = _read_exactly(stream, INFER_BYTES)
    if not head.strip():
        raise DataError("the file is empty", "file")
    cut = head.rfind(b"\n") + 1 if len(head) == INFER_BYTES else len(head)
    try:
        sample = pajson.read_json(io.BytesIO(head[:cut] or head))
    except pa.ArrowInvalid as exc:
        raise DataError(f"the JSON Lines cannot be parsed: {_arrow_message(exc)}", "file") from None
    check_header(list(sample.schema.names), limits.max_columns)
    _check_overrides(overrides, list(sample.schema.names))
    types = {field.name: overrides.get(field.name, _kind(field.type)) for field in sample.schema}
    schema = pa.schema(
        [(n, pa.string() if k == "categorical" else _ARROW_TYPES[k]) for n, k in types.items()]
    )
    try:
        reader = pajson.open_json(
            _Recorded(stream, head),
            read_options=pajson.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pajson.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="error"
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(f"the JSON Lines cannot be parsed: {_arrow_message(exc)}", "file") from None

    def error(exc: Exception, rows: int) -> DataError:
        return DataError(
            f"the JSON Lines cannot be read (after row {rows}): {_arrow_message(exc)}", "file"
        )

    batches = _batches(reader, error)
    return (_markers_missing(batch.select(list(types)), types) for batch in batches), types


def _markers_missing(batch: pa.RecordBatch, types: dict[str, str]) -> pa.RecordBatch:
    arrays = []
    markers = pa.array(MISSING_MARKERS, pa.string())
    for column, kind in zip(batch.columns, types.values(), strict=True):
        if kind == "categorical":
            column = pc.if_else(pc.is_in(column, markers), pa.scalar(None, pa.string()), column)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)
