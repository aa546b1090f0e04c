"""Parsing uploaded tables (CSV text or JSON records) and inferring column types.

Every cell is read as text first, so CSV and JSON go through one inference path:
a column is ``boolean`` when its values are true/false, ``numeric`` when they all
parse as finite numbers, and ``categorical`` otherwise. The normalised frame
(float64, pandas ``boolean``, strings) is what gets stored, as Parquet.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from service.ml.csvtext import CheckedCsv
from service.ml.errors import DataError
from service.ml.preprocessing import category_text

MISSING_MARKERS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")


class ColumnType(StrEnum):
    """What a feature column holds; stored (as its text) in a dataset's column facts."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"


COLUMN_TYPES = tuple(t.value for t in ColumnType)
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})


@dataclass(frozen=True)
class ColumnInfo:
    """What was learned about one column at upload."""

    name: str
    type: str
    missing: int
    n_unique: int


def read_csv(
    content: bytes | BinaryIO, *, max_rows: int, max_columns: int, max_cell_chars: int = 10_000
) -> pd.DataFrame:
    """Parse CSV bytes into a frame of strings (missing cells are ``NA``).

    Parameters
    ----------
    content:
        The raw upload, UTF-8 (a byte-order mark is allowed): bytes, or a binary stream
        read as it is parsed (never held whole; reading stops once ``max_rows`` is
        passed).
    max_rows, max_columns, max_cell_chars:
        Limits; a larger table or a longer cell is a :class:`DataError`.

    Returns
    -------
    A frame of pandas strings, one column per header name.
    """
    source = CheckedCsv(io.BytesIO(content) if isinstance(content, bytes) else content)
    text = source.head()
    header = header_names(text)
    check_header(header, max_columns)
    check_first_row(text, len(header))
    try:
        frame = pd.read_csv(
            io.TextIOWrapper(io.BufferedReader(source), encoding="utf-8-sig", newline=""),
            index_col=False,  # never take extra leading fields for an index
            dtype=str,
            keep_default_na=False,
            na_values=list(MISSING_MARKERS),
            skipinitialspace=True,
            nrows=max_rows + 1,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"the CSV cannot be parsed: {first_line(exc)}", "file") from None
    if len(frame) <= max_rows:
        source.drain()  # pandas read to the end; the guard's last checks
    check_cells(frame, max_cell_chars, "file")
    return _check_rows(frame, max_rows)


def header_names(line: str) -> list[str]:
    """The names in a CSV header line (or text that starts with one)."""
    try:
        return next(csv.reader(io.StringIO(line), skipinitialspace=True), [])
    except csv.Error as exc:  # a field over csv's limit of 128 KiB, say
        raise DataError(f"the header row cannot be read: {exc}", "file") from None


def check_first_row(text: str, width: int) -> None:
    """Refuse a first data row with more fields than the header: pandas would otherwise
    quietly take the extra leading fields for an index (later rows are checked by the
    parser itself; a row with fewer fields has its last cells missing)."""
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    try:
        next(rows, None)
        first = next(rows, None)
    except csv.Error as exc:
        raise DataError(f"the first data row cannot be read: {exc}", "file") from None
    if first is not None and len(first) > width:
        raise DataError(f"line 2 has {len(first)} fields, more than the header's {width}", "file")


def frame_from_records(
    records: Any,
    *,
    max_rows: int,
    max_columns: int,
    max_cell_chars: int = 10_000,
    field: str = "records",
) -> pd.DataFrame:
    """Turn JSON records (a list of objects of scalars) into a frame of strings.

    Booleans become ``"true"``/``"false"`` and numbers their decimal text, so JSON
    uploads infer types exactly like CSV ones. Keys missing from a record are
    missing values.
    """
    if not isinstance(records, list):
        raise DataError("must be a list of objects", field)
    if not records:
        raise DataError("must contain at least one record", field)
    if len(records) > max_rows:
        raise DataError(f"has more than the limit of {max_rows} rows", field)
    columns: dict[str, None] = {}
    rows = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError("must be an object of column: value", f"{field}[{i}]")
        row = {}
        for key, value in record.items():
            columns.setdefault(key, None)
            row[key] = _cell_text(value, f"{field}[{i}].{key}")
        rows.append(row)
    if columns:  # records of only {} are fine at predict time: every feature missing
        check_header(list(columns), max_columns)
    frame = pd.DataFrame(
        {name: [row.get(name) for row in rows] for name in columns},
        index=pd.RangeIndex(len(rows)),
        dtype="str",
    )
    check_cells(frame, max_cell_chars, field)
    return frame.mask(frame.isin(MISSING_MARKERS))


def infer_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[ColumnInfo]]:
    """Infer each column's type and return the normalised frame with the column facts."""
    out = {}
    infos = []
    for name in frame.columns:
        column, kind = _normalise(frame[name], str(name))
        out[name] = column
        infos.append(
            ColumnInfo(
                name=str(name),
                type=kind,
                missing=int(column.isna().sum()),
                n_unique=int(column.nunique(dropna=True)),
            )
        )
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame))), infos


def coerce_columns(frame: pd.DataFrame, types: dict[str, str], *, field: str) -> pd.DataFrame:
    """Convert a frame of strings to the given column types, naming any cell that does not fit.

    Used at predict time, where the types are the ones fixed at training.
    """
    out = {}
    for name, kind in types.items():
        column = frame[name] if name in frame.columns else pd.Series(pd.NA, index=frame.index)
        out[name] = _coerce(column.astype("str"), kind, name, field)
    return pd.DataFrame(out, index=frame.index)


def convert_column(column: pd.Series, kind: str, name: str) -> pd.Series:
    """A stored (normalised) column as another type, for a ``column_types`` override.

    Numbers become categories as their text (``3.0`` → ``"3"``); text becomes numbers or
    booleans only if every value parses. A value that does not is a :class:`DataError`.
    """
    current = {"float64": "numeric", "boolean": "boolean"}.get(str(column.dtype), "categorical")
    if current == kind:
        return column
    if kind == "categorical":
        if current == "boolean":
            return column.map({True: "true", False: "false"}).astype("str")
        return category_text(column).mask(column.isna()).astype("str")
    text = column.astype("str")
    if current == "boolean":
        text = column.map({True: "1", False: "0"}).astype("str")
    elif current == "numeric" and kind == "boolean":
        numbers = column.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isnan(numbers) & ~np.isin(numbers, (0.0, 1.0))
        _raise_on_bad(column, pd.Series(bad, index=column.index), name, "file", "0 or 1")
        text = column.map({1.0: "true", 0.0: "false"}).astype("str")
    return _coerce(text, kind, name, "file")


def to_parquet(frame: pd.DataFrame) -> bytes:
    """Serialise a normalised frame as Parquet bytes."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def from_parquet(data: bytes, columns: list[str] | None = None) -> pd.DataFrame:
    """Read Parquet bytes written by :func:`to_parquet`, optionally only some columns."""
    return pd.read_parquet(io.BytesIO(data), columns=columns)


def check_header(names: list[str], max_columns: int) -> None:
    """Refuse an empty header, too many columns, and empty, unprintable or repeated names."""
    if not names:
        raise DataError("the file has no header row", "file")
    if len(names) > max_columns:
        raise DataError(f"{len(names)} columns is more than the limit of {max_columns}", "file")
    seen = set()
    for position, name in enumerate(names, start=1):
        if not str(name).strip():
            raise DataError(f"column {position} has an empty name", "file")
        if len(str(name)) > 255 or not str(name).isprintable():
            raise DataError(
                f"column {position}'s name must be at most 255 printable characters", "file"
            )
        if name in seen:
            raise DataError(f"column name {name!r} appears more than once", "file")
        seen.add(name)


def check_cells(frame: pd.DataFrame, max_chars: int, field: str) -> None:
    """Refuse a cell longer than ``max_chars``, naming its row by the frame's index
    (0-based: row 1 is index 0; a chunk of a longer file keeps the file's numbering)."""
    for name in frame.columns:
        lengths = frame[name].str.len()
        if lengths.max(skipna=True) > max_chars:
            position = int(np.flatnonzero((lengths > max_chars).to_numpy())[0])
            row = int(frame.index[position])
            where = name if field == "file" else f"{field}[{row}].{name}"
            raise DataError(
                f"column {name!r} row {row + 1} has a value of {int(lengths.iloc[position])} "
                f"characters, more than the limit of {max_chars}",
                where,
            )


def _check_rows(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    if len(frame) == 0:
        raise DataError("the file has a header but no data rows", "file")
    if len(frame) > max_rows:
        raise DataError(f"the file has more than the limit of {max_rows} rows", "file")
    return frame


def _cell_text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DataError("must be a finite number", field)
        return repr(value)
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # "\ud800" is valid JSON, but no character
                raise DataError(
                    "must be valid Unicode text (it has a lone surrogate)", field
                ) from None
        return value
    raise DataError("must be a string, number, boolean or null", field)


def _normalise(column: pd.Series, name: str) -> tuple[pd.Series, str]:
    values = column.dropna()
    if len(values) and values.isin(_TRUE | _FALSE).all():
        return _coerce(column, "boolean", name, "file"), "boolean"
    numbers = pd.to_numeric(values, errors="coerce")
    if len(values) and numbers.notna().all():
        # Parsed once: the present values' numbers, NaN where the cell is missing.
        out = numbers.astype("float64").reindex(column.index)
        infinite = pd.Series(np.isinf(out.to_numpy()), index=column.index)
        _raise_on_bad(column, infinite, name, "file", "a finite number")
        return out, "numeric"
    return column.astype("str"), "categorical"


def _coerce(column: pd.Series, kind: str, name: str, field: str) -> pd.Series:
    missing = column.isna() | column.isin(MISSING_MARKERS)
    if kind in ("categorical", "dropped"):
        return column.mask(missing).astype("str")
    if kind == "boolean":
        truth = column.isin(_TRUE)
        bad = ~(missing | truth | column.isin(_FALSE))
        _raise_on_bad(column, bad, name, field, "true or false")
        return truth.astype("boolean").mask(missing)
    numbers = pd.to_numeric(column.mask(missing), errors="coerce").astype("float64")
    bad = ~missing & numbers.isna()
    _raise_on_bad(column, bad, name, field, "a number")
    infinite = np.isinf(numbers.to_numpy(dtype="float64", na_value=np.nan))
    _raise_on_bad(column, pd.Series(infinite, index=column.index), name, field, "a finite number")
    return numbers


def _raise_on_bad(column: pd.Series, bad: pd.Series, name: str, field: str, expected: str) -> None:
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        row = int(column.index[position])  # the frame's own numbering, as in check_cells
        where = name if field == "file" else f"{field}[{row}].{name}"
        raise DataError(
            f"column {name!r} must be {expected}; row {row + 1} has {column.iloc[position]!r}",
            where,
        )


def first_line(exc: Exception) -> str:
    """The first line of an exception's message (pandas' parser errors run on)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
