"""CSV in, CSV out, a chunk of rows at a time: the pure half of batch predict.

:func:`read_csv_chunks` reads a CSV byte stream incrementally (pandas' C parser over the
stream, so quoted commas and newlines are handled) and yields frames of at most
``chunk_rows`` rows of text cells, indexed by their row in the file (0 is the first data
row), so errors in a later chunk name the file's row. :func:`write_predictions` writes
``label,p_<class>,...`` lines. Memory depends on the chunk size, never on the file's length.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, TextIO

import numpy as np
import pandas as pd

from service.ml.csvcheck import CsvGuard
from service.ml.errors import DataError
from service.ml.preprocessing import label_key
from service.ml.tabular import (
    MISSING_MARKERS,
    check_cells,
    check_header,
    decode_text,
    first_line,
    header_names,
)

MAX_HEADER_BYTES = 1024 * 1024


def read_csv_chunks(
    stream: BinaryIO,
    *,
    chunk_rows: int,
    max_rows: int,
    max_columns: int,
    max_cell_chars: int,
) -> Iterator[pd.DataFrame]:
    """Frames of text cells (missing cells ``NA``), ``chunk_rows`` rows at a time.

    Parameters
    ----------
    stream:
        UTF-8 CSV bytes with a header row (a byte-order mark is allowed), read only as
        far as the rows yielded so far need.
    chunk_rows:
        Rows per frame (the last one may be shorter).
    max_rows, max_columns, max_cell_chars:
        Limits; past one a :class:`DataError` is raised when it is reached.

    The header is checked before any row is parsed; a row that cannot be parsed raises
    a :class:`DataError` when its chunk is reached.
    """
    stream = _Checked(stream)
    head = stream.readline(MAX_HEADER_BYTES + 1)
    if len(head) > MAX_HEADER_BYTES:
        raise DataError(f"the header row is longer than {MAX_HEADER_BYTES} bytes", "file")
    header_text = decode_text(head)
    names = header_names(header_text.rstrip("\r\n"))
    check_header(names, max_columns)
    try:
        reader = pd.read_csv(
            # The header line again, so that pandas' line numbers are the file's.
            io.BufferedReader(_Replay(head, stream), 1 << 16),
            header=0,
            names=names,
            index_col=False,
            dtype=str,
            keep_default_na=False,
            na_values=list(MISSING_MARKERS),
            skipinitialspace=True,
            encoding="utf-8",
            chunksize=chunk_rows,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"the CSV cannot be parsed: {first_line(exc)}", "file") from None
    rows = 0
    with reader:
        while True:
            try:
                with warnings.catch_warnings():
                    # A first row longer than the header: pandas warns and drops fields.
                    warnings.simplefilter("error", pd.errors.ParserWarning)
                    chunk = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError:
                raise DataError(
                    f"the file is not UTF-8 text (past data row {rows})", "file"
                ) from None
            except pd.errors.ParserWarning:
                raise DataError(
                    f"a row after data row {rows} has more fields than the header's "
                    f"{len(names)}",
                    "file",
                ) from None
            except (pd.errors.ParserError, ValueError) as exc:
                raise DataError(f"the CSV cannot be parsed: {first_line(exc)}", "file") from None
            rows += len(chunk)
            if rows > max_rows:
                raise DataError(f"the file has more than the limit of {max_rows} rows", "file")
            check_cells(chunk, max_cell_chars, "file")
            yield chunk
    if rows == 0:
        raise DataError("the file has a header but no data rows", "file")


def write_header(out: TextIO, classes: Sequence[Any]) -> None:
    """``label`` and ``p_<class>`` for every class, in the model's class order."""
    header = ["label", *(f"p_{label_key(c)}" for c in classes)]
    csv.writer(out, lineterminator="\n").writerow(header)


def write_predictions(out: TextIO, classes: Sequence[Any], probabilities: np.ndarray) -> None:
    """One CSV line per row: the most probable class, then each class's probability.

    Probabilities are written as the shortest text that reads back as the same float64.
    """
    names = [label_key(c) for c in classes]
    labels = [names[i] for i in probabilities.argmax(axis=1).tolist()]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(
        [label, *row] for label, row in zip(labels, probabilities.tolist(), strict=True)
    )


def predictions_csv(classes: Sequence[Any], probabilities: np.ndarray) -> str:
    """The whole CSV answer (header and rows) for probabilities already computed."""
    out = io.StringIO()
    write_header(out, classes)
    write_predictions(out, classes, probabilities)
    return out.getvalue()


class _Checked:
    """A body whose bytes pass through a :class:`CsvGuard` as they are read."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._guard = CsvGuard()
        self._done = False

    def readline(self, limit: int = -1) -> bytes:
        return self._seen(self._stream.readline(limit))

    def read(self, size: int = -1) -> bytes:
        return self._seen(self._stream.read(size))

    def _seen(self, data: bytes) -> bytes:
        if data:
            self._guard.feed(data)
        elif not self._done:
            self._done = True
            self._guard.close()
        return data


class _Replay(io.RawIOBase):
    """``head`` then the rest of ``stream``, as a raw binary file buffering can wrap."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            data, self._head = self._head[: len(buffer)], self._head[len(buffer) :]
        else:
            data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
