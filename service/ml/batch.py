"""CSV in, CSV out, a batch of rows at a time: the pure half of batch predict and evaluate.

:class:`CsvRows` reads a CSV byte stream incrementally with the reader uploads use
(``ml.ingest``: pyarrow's streaming parser behind the same byte guard and header checks),
the model's numeric and boolean columns converted as they are parsed, and yields Arrow
record batches of at most ``chunk_rows`` rows. :func:`encode` turns a batch into the
network's inputs, column by column in numpy and Arrow (the same arithmetic as
``FeatureEncoder.transform``). :func:`prediction_lines` formats ``label,p_<class>,...``
lines in Arrow. Memory depends on the chunk size, never on the file's length.

Cells are read as ``tabular.read_csv`` reads them: leading spaces go, the missing
markers are missing, quoted values may hold commas and line breaks. Unlike it, a row
with fewer fields than the header is refused (as an upload refuses it), and so is a
body that ends inside a quoted value. A bad cell is a :class:`DataError` naming its row
(data rows from 1) and column, as the JSON predict names it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from service.ml.errors import DataError
from service.ml.ingest import (
    check_cell_lengths,
    check_finite,
    convert_options,
    csv_batches,
    csv_head,
    trim_strings,
)
from service.ml.preprocessing import (
    FeatureEncoder,
    category_codes,
    encode_codes,
    encode_numbers,
    label_key,
)

# Bytes parsed at a time: about 20,000 rows of 20 numbers, so per-batch costs are small.
BLOCK_BYTES = 4 * 1024 * 1024
_EXPECTED = {"numeric": "a number", "boolean": "true or false"}


class CsvRows:
    """The rows of a CSV body as Arrow record batches, numeric and boolean columns typed.

    Parameters
    ----------
    stream:
        UTF-8 CSV bytes with a header row (a byte-order mark is allowed); the header is
        read and checked when the object is made, the rows as they are iterated.
    types:
        Column → ``numeric`` | ``boolean`` | anything else (read as text).
    chunk_rows:
        At most this many rows per batch.
    max_rows, max_columns, max_cell_chars:
        Limits; past one a :class:`DataError` is raised when it is reached.
    field:
        How a bad cell is named: ``file`` names its column; anything else ``f[row].column``
        (0-based row), as the JSON predict names ``records[row].column``.
    """

    def __init__(
        self,
        stream: BinaryIO,
        types: dict[str, str],
        *,
        chunk_rows: int,
        max_rows: int,
        max_columns: int,
        max_cell_chars: int,
        field: str = "records",
    ):
        self._stream, self._head, self.header = csv_head(stream, max_columns)
        self.types = {
            name: types[name] if types.get(name) in _EXPECTED else "categorical"
            for name in self.header
        }
        self.chunk_rows, self.max_rows, self.max_cell_chars = chunk_rows, max_rows, max_cell_chars
        self.field = field

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._batches()
        except DataError:
            self._check_quotes()  # a quote never closed makes the last row's cells odd
            raise
        self._check_quotes()

    def _check_quotes(self) -> None:
        if self._stream.ended and self._stream.guard.open_quote:
            raise DataError(
                "the CSV cannot be parsed: EOF inside a quoted value (a quote is never closed)",
                "file",
            ) from None

    def _batches(self) -> Iterator[pa.RecordBatch]:
        rows = 0
        for batch in csv_batches(
            self._stream,
            self._head,
            self.header,
            convert_options(self.types),
            self._bad_value,
            block_size=BLOCK_BYTES,
            newlines_in_values=True,
        ):
            if rows + batch.num_rows > self.max_rows:
                raise DataError(f"the file has more than the limit of {self.max_rows} rows", "file")
            batch = trim_strings(batch, self.types)
            check_cell_lengths(batch, self.types, self.max_cell_chars, rows)
            check_finite(batch, self.types, rows, self.field)
            for start in range(0, batch.num_rows, self.chunk_rows):
                yield batch.slice(start, self.chunk_rows)
            rows += batch.num_rows
        if rows == 0:
            raise DataError("the file has a header but no data rows", "file")

    def _bad_value(self, name: str, row: int | None, value: str, before: int) -> DataError:
        expected = _EXPECTED[self.types[name]]
        if row is None:
            return DataError(
                f"column {name!r} must be {expected}; a row after row {before} has {value!r}",
                name,
            )
        where = name if self.field == "file" else f"{self.field}[{row - 1}].{name}"
        return DataError(f"column {name!r} must be {expected}; row {row} has {value!r}", where)


def encode(encoder: FeatureEncoder, batch: pa.RecordBatch) -> np.ndarray:
    """The network's inputs for a batch of :class:`CsvRows` (absent columns are missing).

    Returns
    -------
    A C-contiguous float32 array of shape ``(batch.num_rows, encoder.n_inputs)``.
    """
    out = np.zeros((batch.num_rows, encoder.n_inputs), dtype=np.float32)
    names = set(batch.schema.names)
    offset = 0
    for column in encoder.columns:
        values = batch.column(column.name) if column.name in names else None
        if column.type in ("numeric", "boolean"):
            if values is None:
                x = np.full(batch.num_rows, np.nan)
            else:
                x = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
            encode_numbers(out, offset, column, x)
        elif column.type == "categorical":
            encode_codes(out, offset, column, _codes(column, values, batch.num_rows))
        offset += column.width
    return out


def _codes(column, values: pa.Array | None, n: int) -> np.ndarray:
    slot = len(column.categories)  # missing and unseen values
    if values is None:
        return np.full(n, slot)
    if column.numeric_codes:  # "3.0" is the category "3": rare, and done in pandas
        return category_codes(column, values.to_pandas())
    found = pc.index_in(values, value_set=pa.array(column.categories, pa.string()))
    return pc.fill_null(found, slot).to_numpy()


def header_line(classes: Sequence[Any]) -> str:
    """``label`` and ``p_<class>`` for every class, in the model's class order."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        ["label", *(f"p_{label_key(c)}" for c in classes)]
    )
    return out.getvalue()


def prediction_lines(classes: Sequence[Any], probabilities: np.ndarray) -> bytes:
    """One CSV line per row: the most probable class, then each class's probability.

    Probabilities are written as the shortest text that reads back as the same float64
    (Arrow's formatting: ``1e-7``, ``1``).
    """
    if len(probabilities) == 0:
        return b""
    labels = pc.take(
        pa.array([_cell(label_key(c)) for c in classes], pa.string()),
        pa.array(probabilities.argmax(axis=1)),
    )
    numbers = [pc.cast(pa.array(probabilities[:, j]), pa.string()) for j in range(len(classes))]
    lines = pc.binary_join_element_wise(
        pc.binary_join_element_wise(labels, *numbers, ","), "", "\n"
    )
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return lines.buffers()[2].slice(start, end - start).to_pybytes()


def predictions_csv(classes: Sequence[Any], probabilities: np.ndarray) -> str:
    """The whole CSV answer (header and rows) for probabilities already computed."""
    return header_line(classes) + prediction_lines(classes, probabilities).decode()


def _cell(text: str) -> str:
    """``text`` as one CSV cell, quoted where it must be."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([text])
    return out.getvalue()[:-1]
