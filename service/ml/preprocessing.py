"""The fitted feature encoder and the stratified split, both plain data serialisable as JSON.

Fitted on the training split only, from its statistics (``ml.stats``: one streaming
pass, so a table of any size fits; the median is exact up to 100 000 rows per column
and estimated from a uniform sample beyond):

- numeric: median imputation, then ``(x - mean) / std`` with either the training mean
  and standard deviation (``scaling="standard"``, the plain recipe) or, for
  ``scaling="robust"`` (the tabular recipe), the median and a robust spread: the
  interquartile range, or half the range where the quartiles coincide (the network then
  clips the result smoothly); or, for ``scaling="quantile"``, a rank-Gauss transform:
  the value's place among :data:`QUANTILE_KNOTS` quantiles of the training values,
  mapped to the standard normal score of that share (piecewise linear between the
  knots, ties collapsed to one knot at the mean of their scores, bounded by
  ±:data:`QUANTILE_BOUND`); a 0/1 column is kept as 0/1;
- boolean: 0/1, missing imputed with the most frequent value;
- numeric and boolean columns with missing values in training get a missing-indicator
  input (1 where the value was missing);
- categorical: one-hot over the categories seen in training plus one slot shared by
  missing and unseen values; integer-coded categoricals (a ``column_types``
  override of a numeric column) match ``3``, ``3.0`` and ``"3"`` alike;
- a column that is entirely missing, or constant without missing values, carries no
  information: it is dropped (no input; still accepted at predict time) with a note;
- a categorical column whose every value is distinct is flagged as ID-like.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from service.ml.errors import DataError
from service.ml.stats import ColumnStats, TableStats, table_stats

ENCODER_FORMAT = 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: ``scaling="quantile"``: knots per numeric column (at most; fewer for columns with
#: fewer present values, and tied knots collapse), at evenly spaced shares 0..1
#: (scikit-learn's ``QuantileTransformer`` takes 1,000 by default: on bench/accuracy.py
#: that moved single tables by ±1.5 points either way, the noise of a new draw, and
#: stores four times the knots; bench/README.md).
QUANTILE_KNOTS = 256
#: The normal scores of the shares 0 and 1 (otherwise infinite) are clipped to this.
QUANTILE_BOUND = 5.2


@dataclass(frozen=True)
class ColumnEncoding:
    """How one input column becomes one or more network inputs."""

    name: str
    type: str
    median: float | None = None
    mean: float | None = None
    std: float | None = None
    fill: float | None = None
    categories: tuple[str, ...] = ()
    indicator: bool = False
    numeric_codes: bool = False
    note: str | None = None
    # "standard" (mean, standard deviation), "robust" (median, robust spread),
    # "quantile" (rank-Gauss through ``quantiles`` → ``scores``) or "binary" (a 0/1
    # column kept as is). Encoders stored before it are "standard".
    scaling: str = "standard"
    # scaling "quantile": ascending distinct training quantiles and their normal scores;
    # a value is mapped by linear interpolation (clamped to the end scores).
    quantiles: tuple[float, ...] = ()
    scores: tuple[float, ...] = ()

    @property
    def width(self) -> int:
        """How many network inputs this column produces."""
        return column_width(self.type, len(self.categories), self.indicator)


def column_width(kind: str, n_categories: int, indicator: bool) -> int:
    """How many network inputs a column of type ``kind`` produces: a categorical one,
    one-hot over its ``n_categories`` plus one slot for missing and unseen values; a
    numeric or boolean one, its value plus a missing ``indicator`` when it has one.

    Parameters
    ----------
    kind:
        ``numeric``, ``boolean``, ``categorical`` or ``dropped``.
    n_categories:
        The categories kept (categorical only).
    indicator:
        Whether missing values get an indicator input (numeric and boolean only).

    Returns
    -------
    The width (0 for a dropped column).
    """
    if kind == "dropped":
        return 0
    if kind == "categorical":
        return n_categories + 1
    return 1 + int(indicator)


@dataclass(frozen=True)
class FeatureEncoder:
    """A fitted encoder: frame of typed columns in, float32 matrix out."""

    columns: tuple[ColumnEncoding, ...]

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, types: dict[str, str], scaling: str = "standard"
    ) -> FeatureEncoder:
        """Fit on the training split held in memory (see :meth:`fit_stats`).

        Parameters
        ----------
        frame:
            The training rows, columns already normalised (see ``tabular``).
        types:
            Feature name → ``numeric`` | ``categorical`` | ``boolean``, in input order.
        scaling:
            ``standard`` or ``robust``: how numeric columns are centred and scaled.
        """
        for name, kind in types.items():
            if kind not in ("numeric", "boolean", "categorical"):
                raise DataError(f"unknown column type {kind!r}", name)
        return cls.fit_stats(table_stats(frame, types), types, scaling=scaling)

    @classmethod
    def fit_stats(
        cls,
        stats: TableStats,
        types: dict[str, str],
        *,
        max_categories: int | None = None,
        scaling: str = "standard",
    ) -> FeatureEncoder:
        """Fit from the training split's statistics (one streaming pass, ``ml.stats``).

        Parameters
        ----------
        stats:
            Statistics of the training rows, gathered with these ``types``.
        types:
            Feature name → ``numeric`` | ``categorical`` | ``boolean``, in input order.
        max_categories:
            Keep at most this many categories per column (the most frequent); the
            others share the missing/unseen slot. ``None``: every category seen.
        scaling:
            ``standard`` or ``robust``: how numeric columns are centred and scaled.
        """
        return cls(
            tuple(
                _fit_column(stats[name], name, kind, max_categories, scaling)
                for name, kind in types.items()
            )
        )

    @property
    def numeric_inputs(self) -> tuple[int, ...]:
        """Input positions of numeric values (not 0/1 columns, not missing indicators)."""
        positions, offset = [], 0
        for column in self.columns:
            if column.type == "numeric" and column.scaling != "binary":
                positions.append(offset)
            offset += column.width
        return tuple(positions)

    @property
    def n_inputs(self) -> int:
        """Width of the matrix :meth:`transform` returns."""
        return sum(column.width for column in self.columns)

    @property
    def types(self) -> dict[str, str]:
        """Feature name → type, in input order (``dropped`` for ignored columns)."""
        return {column.name: column.type for column in self.columns}

    @property
    def notes(self) -> list[str]:
        """What the fit decided about particular columns, for the job's summary."""
        return [column.note for column in self.columns if column.note]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode every row at once.

        Returns
        -------
        A C-contiguous float32 array of shape ``(len(frame), n_inputs)``.
        """
        out = np.zeros((len(frame), self.n_inputs), dtype=np.float32)
        offset = 0
        for column in self.columns:
            _encode_into(out, offset, column, frame[column.name])
            offset += column.width
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe description from which :meth:`from_json` rebuilds the encoder."""
        return {"format": ENCODER_FORMAT, "columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureEncoder:
        """Rebuild an encoder saved by :meth:`to_json`."""
        if data.get("format") != ENCODER_FORMAT:
            raise DataError(f"unknown encoder format {data.get('format')!r}")
        return cls(
            tuple(
                ColumnEncoding(
                    **{
                        **c,
                        "categories": tuple(c["categories"]),
                        "quantiles": tuple(c.get("quantiles", ())),
                        "scores": tuple(c.get("scores", ())),
                    }
                )
                for c in data["columns"]
            )
        )


@dataclass(frozen=True)
class LabelEncoder:
    """Class labels ↔ integer codes, labels kept as JSON values (str, int, float or bool)."""

    classes: tuple[Any, ...]

    @classmethod
    def fit(cls, target: pd.Series) -> LabelEncoder:
        """Learn the sorted distinct non-missing values of the target column."""
        values = target.dropna()
        return cls(tuple(_json_label(v) for v in sorted(values.unique().tolist())))

    def encode(self, target: pd.Series) -> np.ndarray:
        """Codes 0..n_classes-1 as int64; every value must be a known class."""
        lookup = {label: code for code, label in enumerate(self.classes)}
        index, distinct = pd.factorize(target)  # one lookup per distinct value, not per row
        if (index < 0).any():
            raise KeyError("a missing target value has no class code")
        codes = np.array([lookup[_json_label(v)] for v in distinct], dtype=np.int64)
        return codes[index]


SPLIT_CHUNK = 1 << 16


def validation_mask(
    codes: np.ndarray,
    fraction: float,
    seed: int,
    out: np.ndarray | None = None,
    scratch: Path | None = None,
) -> np.ndarray:
    """Which rows validate: in each class a uniformly random ``round(fraction * n)`` of
    its ``n`` rows (at least one in each part when the class has two rows or more).

    Each class's row numbers, in order, are permuted with the seeded generator (one
    class after another, in code order) and the first ``round(fraction * n)`` validate:
    the split every earlier version drew, so that a job checkpointed before this code
    resumes on the rows it started with. ``codes`` is read ``SPLIT_CHUNK`` rows at a
    time, so ``codes`` and ``out`` may be memory maps; with ``scratch`` (a directory)
    the one class's row numbers being permuted are a memory-mapped file there too, and
    nothing with an entry per row is held in memory. Depends only on ``codes``,
    ``fraction`` and ``seed``.

    Parameters
    ----------
    codes:
        Class codes 0..n_classes-1, one per row (any integer dtype).
    out:
        A boolean array of the same length to fill (for instance a memory map).
    scratch:
        A directory for the working file (removed before returning); ``None``: memory.
    """
    n = len(codes)
    mask = np.zeros(n, dtype=bool) if out is None else out
    mask[:] = False
    counts = np.zeros(1, dtype=np.int64)
    for start in range(0, n, SPLIT_CHUNK):
        here = np.bincount(np.asarray(codes[start : start + SPLIT_CHUNK]))
        counts = _padded(counts, len(here)) + _padded(here, len(counts))
    rng = np.random.default_rng(seed)
    for code in np.flatnonzero(counts):
        rows = _class_rows(codes, int(code), int(counts[code]), scratch)
        # Shuffled as a plain array (a view of the same memory): numpy shuffles an
        # ndarray subclass such as a memmap element by element through Python
        # (5.7 of the 8.2 CPU-seconds of encoding 1M rows), with the same draws.
        rng.shuffle(rows.view(np.ndarray))
        n_val = int(round(fraction * len(rows)))
        n_val = min(max(n_val, 1), len(rows) - 1) if len(rows) >= 2 else 0
        for start in range(0, n_val, SPLIT_CHUNK):
            mask[np.asarray(rows[start : min(start + SPLIT_CHUNK, n_val)])] = True
        del rows
    if scratch is not None:
        (Path(scratch) / _CLASS_ROWS).unlink(missing_ok=True)
    return mask


_CLASS_ROWS = "class-rows.tmp.i64"


def _class_rows(codes: np.ndarray, code: int, count: int, scratch: Path | None) -> np.ndarray:
    """The row numbers of class ``code``, ascending: in memory, or a map in ``scratch``."""
    if scratch is None:
        rows = np.empty(count, dtype=np.int64)
    else:
        rows = np.memmap(Path(scratch) / _CLASS_ROWS, np.int64, "w+", shape=(count,))
    at = 0
    for start in range(0, len(codes), SPLIT_CHUNK):
        found = np.flatnonzero(np.asarray(codes[start : start + SPLIT_CHUNK]) == code) + start
        rows[at : at + len(found)] = found
        at += len(found)
    return rows


def _padded(values: np.ndarray, length: int) -> np.ndarray:
    return np.pad(values, (0, max(0, length - len(values))))


def stratified_split(
    codes: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices so each class keeps its share in both parts
    (:func:`validation_mask`).

    Every class with at least two rows puts at least one in each part. The result
    depends only on ``codes``, ``fraction`` and ``seed``.

    Returns
    -------
    ``(train_indices, validation_indices)``, each sorted.
    """
    mask = validation_mask(codes, fraction, seed)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def stratified_folds(codes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each row's fold, 0..k-1, so that every class is spread evenly over the folds.

    Depends only on ``codes``, ``k`` and ``seed``.
    """
    rng = np.random.default_rng(seed)
    folds = np.empty(len(codes), dtype=np.int64)
    start = 0
    for code in np.unique(codes):
        rows = rng.permutation(np.flatnonzero(codes == code))
        folds[rows] = (np.arange(len(rows)) + start) % k
        start += len(rows)  # the next class goes on where this one stopped
    return folds


def robust_spread(q25: float, q75: float, low: float, high: float) -> float:
    """The scale of robust scaling: the interquartile range; where the quartiles
    coincide, half the range; 1 for a constant column."""
    if q75 > q25:
        return q75 - q25
    if high > low:
        return (high - low) / 2
    return 1.0


def _fit_column(
    stats: ColumnStats, name: str, kind: str, max_categories: int | None, scaling: str
) -> ColumnEncoding:
    if kind not in ("numeric", "boolean", "categorical"):
        raise DataError(f"unknown column type {kind!r}", name)
    counts = stats.counts or {}
    numeric_codes = kind == "categorical" and _all_number_texts(counts)
    if numeric_codes:
        counts = _merge_number_texts(counts)
    missing = stats.missing > 0
    n_unique = len(counts) if numeric_codes else stats.n_unique
    if n_unique == 0:
        return ColumnEncoding(name, "dropped", note=f"{name!r} dropped: every value is missing")
    if n_unique == 1 and not missing:
        return ColumnEncoding(name, "dropped", note=f"{name!r} dropped: it has one value only")
    if kind == "numeric":
        median = float(stats.quantile(0.5))
        if stats.only_01:
            return ColumnEncoding(
                name,
                kind,
                median=median,
                mean=0.0,
                std=1.0,
                indicator=missing,
                scaling="binary" if scaling in ("robust", "quantile") else "standard",
            )
        if scaling == "quantile":
            quantiles, scores = quantile_knots(stats)
            return ColumnEncoding(
                name,
                kind,
                median=median,
                mean=0.0,
                std=1.0,
                indicator=missing,
                scaling="quantile",
                quantiles=quantiles,
                scores=scores,
            )
        if scaling == "robust":
            q25, q75 = (float(q) for q in stats.quantile([0.25, 0.75]))
            spread = robust_spread(q25, q75, float(stats.min), float(stats.max))
            return ColumnEncoding(
                name,
                kind,
                median=median,
                mean=median,
                std=spread,
                indicator=missing,
                scaling="robust",
            )
        mean, std = _filled_moments(stats, median)
        return ColumnEncoding(
            name, kind, median=median, mean=mean, std=std if std > 0 else 1.0, indicator=missing
        )
    if kind == "boolean":
        fill = 1.0 if stats.n_true / stats.count >= 0.5 else 0.0
        return ColumnEncoding(name, kind, fill=fill, indicator=missing)
    if max_categories is not None and len(counts) > max_categories:
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        counts = dict(ranked[:max_categories])
    categories = tuple(sorted(counts))
    note = None
    if n_unique == stats.rows and n_unique >= 20:
        note = f"{name!r} looks like an ID: every value is distinct; consider leaving it out"
    return ColumnEncoding(name, kind, categories=categories, numeric_codes=numeric_codes, note=note)


def quantile_knots(stats: ColumnStats) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The rank-Gauss map of a numeric column (``scaling="quantile"``): the quantiles of
    its present training values at ``min(QUANTILE_KNOTS, count)`` evenly spaced shares
    ``p`` from 0 to 1, and each one's standard normal score ``Φ⁻¹(p)`` (bounded by
    ±``QUANTILE_BOUND``). Knots with the same value (a column's repeated values: zeros
    of a count, the levels of a score) become one, at the mean of their scores, so a
    value held by many rows maps to the middle of its rows' ranks.
    """
    n = max(2, min(QUANTILE_KNOTS, stats.count))
    knots = np.asarray(stats.quantile(np.linspace(0.0, 1.0, n)), dtype=np.float64)
    scores = np.array(_normal_scores(n))
    values, first, counts = np.unique(knots, return_index=True, return_counts=True)
    # np.unique sorts; the knots are already ascending, so each value's knots are the
    # run starting at ``first``.
    means = np.add.reduceat(scores, first) / counts
    return tuple(float(v) for v in values), tuple(float(s) for s in means)


@functools.lru_cache(maxsize=8)
def _normal_scores(n: int) -> tuple[float, ...]:
    """``Φ⁻¹`` of ``n`` evenly spaced shares from 0 to 1, bounded by ±QUANTILE_BOUND."""
    normal = NormalDist()
    return tuple(
        max(-QUANTILE_BOUND, min(QUANTILE_BOUND, normal.inv_cdf(min(max(p, 1e-12), 1 - 1e-12))))
        for p in np.linspace(0.0, 1.0, n).tolist()
    )


def _filled_moments(stats: ColumnStats, fill: float) -> tuple[float, float]:
    """Mean and (population) standard deviation once missing values are ``fill``."""
    n, m = stats.count, stats.missing
    total = n + m
    mean = (n * stats.mean + m * fill) / total
    m2 = n * stats.variance + n * (stats.mean - mean) ** 2 + m * (fill - mean) ** 2
    return float(mean), float(np.sqrt(max(m2 / total, 0.0)))


def _all_number_texts(counts: dict[str, int]) -> bool:
    if not counts:
        return False
    numbers = pd.to_numeric(pd.Series(list(counts), dtype="str"), errors="coerce")
    return bool(numbers.notna().all())


def _merge_number_texts(counts: dict[str, int]) -> dict[str, int]:
    """Counts keyed by :func:`category_text` (``"3.0"`` and ``"3"`` are one category)."""
    keys = category_text(pd.Series(list(counts), dtype="str")).tolist()
    merged: dict[str, int] = {}
    for key, n in zip(keys, counts.values(), strict=True):
        merged[key] = merged.get(key, 0) + n
    return merged


def category_text(values: pd.Series) -> pd.Series:
    """Numbers as category names: ``3``, ``3.0`` and ``"3"`` all become ``"3"``."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    integral = numbers.notna() & (numbers == np.floor(numbers.fillna(0)))
    text = values.astype("str")
    text = text.mask(integral, numbers[integral].astype("int64").astype("str"))
    return text.mask(numbers.notna() & ~integral, numbers.astype("str"))


def _encode_into(out: np.ndarray, offset: int, column: ColumnEncoding, values: pd.Series) -> None:
    if column.type == "dropped":
        return
    if column.type in ("numeric", "boolean"):
        x = values.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
        encode_numbers(out, offset, column, x)
    else:
        encode_codes(out, offset, column, category_codes(column, values))


def encode_numbers(out: np.ndarray, offset: int, column: ColumnEncoding, x: np.ndarray) -> None:
    """Write a numeric or boolean column's inputs (``x``: float64, NaN where missing) into
    ``out`` from column ``offset``: its imputed, scaled value, and its missing indicator."""
    absent = np.isnan(x)
    if column.type == "numeric" and column.scaling == "quantile":
        filled = np.where(absent, column.median, x)
        out[:, offset] = QuantileColumns([column])(filled[:, None])[:, 0]
    elif column.type == "numeric":
        with np.errstate(over="ignore"):  # beyond float64 → inf → clipped below
            scaled = (np.where(absent, column.median, x) - column.mean) / column.std
        out[:, offset] = np.clip(scaled, -FLOAT32_MAX, FLOAT32_MAX)  # no inf in float32
    else:
        out[:, offset] = np.where(absent, column.fill, x)
    if column.indicator:
        out[:, offset + 1] = absent


class QuantileColumns:
    """The rank-Gauss maps of quantile-scaled columns, applied together: each value
    linearly interpolated between the two knots around it (``quantiles`` → ``scores``,
    the arithmetic of ``numpy.interp``), the end scores beyond the knots.

    Every path that encodes numbers (the frame, the CSV batches, the records fast path)
    goes through :meth:`__call__`, so they agree bit for bit. Few rows (a one-row
    predict) find their knots with one comparison against every knot of every column;
    more rows with a binary search per column.
    """

    #: Up to this many rows the knots are found by comparing with all of them at once.
    DIRECT_ROWS = 16

    def __init__(self, columns: list[ColumnEncoding]):
        m = len(columns)
        width = max((len(c.quantiles) for c in columns), default=1)
        self.counts = np.array([len(c.quantiles) for c in columns], dtype=np.intp)
        # Past a column's own knots: +inf (never below a value once it is clamped).
        self.knots = np.full((m, width), np.inf)
        scores = np.zeros((m, width))
        slopes = np.zeros((m, width))  # of the segment from each knot; 0 from the last
        for i, column in enumerate(columns):
            q, y = np.array(column.quantiles), np.array(column.scores)
            self.knots[i, : len(q)] = q
            scores[i, : len(q)] = y
            slopes[i, : len(q) - 1] = (y[1:] - y[:-1]) / (q[1:] - q[:-1])
        self.first = self.knots[:, 0].copy()
        self.last = self.knots[np.arange(m), self.counts - 1]
        self.flat = (self.knots.ravel(), scores.ravel(), slopes.ravel())
        # Of each column's knot before the first in the flat arrays (see __call__).
        self.before_row = np.arange(m) * width - 1
        # With one +inf past every column's knots: the first knot above a value is found
        # in every row, at the count of those at or below it.
        self.bounded = np.concatenate([self.knots, np.full((m, 1), np.inf)], axis=1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The scores of ``x`` (float64 ``(rows, columns)``, no NaN), float64."""
        x = np.minimum(np.maximum(x, self.first), self.last)
        if len(x) <= self.DIRECT_ROWS:  # the first True of each row (the knots are sorted)
            below = (self.bounded[None, :, :] > x[:, :, None]).argmax(axis=2)
        else:
            below = np.stack(
                [
                    np.searchsorted(self.knots[i, :n], x[:, i], side="right")
                    for i, n in enumerate(self.counts)
                ],
                axis=1,
            )
        # Clamped, every value has at least the first knot at or below it and none of the
        # padding: the segment from the last of them (the last knot's has slope 0).
        at = below + self.before_row
        knots, scores, slopes = self.flat
        return slopes[at] * (x - knots[at]) + scores[at]


def category_codes(column: ColumnEncoding, values: pd.Series) -> np.ndarray:
    """Each value's position in the column's categories; missing and unseen values get the
    last slot (``len(categories)``)."""
    if column.numeric_codes:
        values = category_text(values)
    slot = len(column.categories)
    if isinstance(values.array, pd.arrays.ArrowStringArray):
        # Text held by Arrow (stored tables, ``ingest.batch_frame``): looked up in Arrow,
        # a tenth of the CPU of pandas' lookup, which first makes Python strings of it.
        text = pa.array(values.array)  # the same Arrow data, not a copy
        found = pc.index_in(text, value_set=pa.array(column.categories, pa.string()))
        return np.asarray(pc.fill_null(found, slot), dtype=np.int64)
    codes = pd.Index(column.categories, dtype="str").get_indexer(values.astype("str"))
    return np.where(codes < 0, slot, codes)


def encode_codes(out: np.ndarray, offset: int, column: ColumnEncoding, codes: np.ndarray) -> None:
    """Write a categorical column's one-hot inputs (``codes`` from :func:`category_codes`)."""
    out[np.arange(len(codes)), offset + codes] = 1.0


def label_key(label: Any) -> str:
    """A class label as text: JSON object keys, CSV column names, ``class_weight`` keys."""
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


def _json_label(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)
