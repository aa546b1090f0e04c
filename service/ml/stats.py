"""Column statistics from one streaming pass: accumulators that merge chunk by chunk.

A table is read a chunk (a frame of normalised columns, see ``tabular``) at a time;
:class:`TableAccumulator` keeps, per column, only what the statistics need, never the
rows, and :meth:`TableAccumulator.finish` turns that into plain, JSON-safe
:class:`ColumnStats`. Accumulators of two parts of a table merge into the
accumulator of the whole, so chunks can be summarised apart and combined.

What each column keeps, and how exact it is:

- every column: ``count`` (present values) and ``missing``, exact;
- ``n_unique``: exact while the column has at most ``count_limit`` distinct values
  (their counts are kept); beyond that an estimate from a K-minimum-values sketch of
  64-bit hashes (``DISTINCT_SKETCH`` = 4096 values: relative standard error about
  1/sqrt(4096) = 1.6%), and ``n_unique_exact`` is false;
- numeric: ``min``, ``max``, ``mean``, ``variance`` (population; Chan et al.'s
  pairwise merge of per-chunk sums, exact up to float rounding), ``only_01`` (every
  value is 0 or 1), and :meth:`ColumnStats.quantile` for any q: exact (linear
  interpolation, as ``numpy.quantile``) while the column has at most
  ``quantile_capacity`` present values, beyond that the same interpolation over a
  uniform random sample of ``quantile_capacity`` values (a bottom-k sample by random
  priority, which merges exactly: the rank error of a quantile is about
  sqrt(q(1-q)/capacity), 0.16% of the rows at the median for 100 000);
- boolean: ``n_true``, ``n_false``, exact;
- categorical (and any column while it has at most ``count_limit`` distinct values):
  the count of each value; :meth:`ColumnStats.categories` gives the ``max_categories``
  most frequent and the count of all others ("other"). A column with more than
  ``count_limit`` distinct values keeps the counts of the first ``count_limit`` it met
  and counts later new values into ``other`` only (``counts_exact`` false).

Nothing here imports flask, sqlalchemy or celery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DISTINCT_SKETCH = 4096
DEFAULT_QUANTILE_CAPACITY = 100_000
# Bounds the memory of quantile samples over all numeric columns of a table (float64).
QUANTILE_BUDGET_VALUES = 1 << 24
_HASH_SPACE = float(2**64)


@dataclass
class ColumnStats:
    """The finished statistics of one column (plain data; see the module docstring)."""

    name: str
    type: str
    count: int
    missing: int
    n_unique: int
    n_unique_exact: bool = True
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    variance: float | None = None
    only_01: bool = False
    n_true: int = 0
    n_false: int = 0
    counts: dict[str, int] | None = None
    other: int = 0
    counts_exact: bool = True
    sample: np.ndarray | None = field(default=None, repr=False)
    sample_exact: bool = True

    @property
    def rows(self) -> int:
        """Present plus missing values."""
        return self.count + self.missing

    @property
    def std(self) -> float | None:
        """Population standard deviation of the present values."""
        return None if self.variance is None else math.sqrt(self.variance)

    def quantile(self, q: float | list[float] | np.ndarray) -> float | np.ndarray:
        """Quantile(s) of the present values (numeric columns), interpolated linearly.

        Exact while the column had at most ``quantile_capacity`` values, else estimated
        from a uniform sample of that many (see the module docstring). ``nan`` for a
        column without present values.
        """
        if self.sample is None:
            raise ValueError(f"column {self.name!r} keeps no quantile sample")
        if len(self.sample) == 0:
            return np.full(np.shape(q), np.nan) if np.ndim(q) else math.nan
        result = np.quantile(self.sample, q)
        return float(result) if np.ndim(result) == 0 else result

    def categories(self, max_categories: int | None = None) -> tuple[dict[str, int], int]:
        """The most frequent values with their counts (at most ``max_categories``, ties
        broken by value) and how many present values are not among them."""
        counts = self.counts or {}
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if max_categories is not None:
            kept = dict(ranked[:max_categories])
        else:
            kept = dict(ranked)
        return kept, self.count - sum(kept.values())

    def summary(self, top: int = 20) -> dict[str, Any]:
        """A JSON-safe summary for a dataset's ``columns`` (numbers rounded by nothing)."""
        if self.type == "numeric":
            return {
                "min": self.min,
                "max": self.max,
                "mean": self.mean,
                "std": self.std,
            }
        kept, other = self.categories(top)
        return {"counts": kept, "other": other}


class _Distinct:
    """Exact distinct values (with counts) up to a limit, then a KMV sketch of hashes."""

    def __init__(self, count_limit: int, numeric: bool = False):
        self.count_limit = count_limit
        # Past the limit, categories keep counting the values they kept; numbers don't.
        self.numeric = numeric
        self.counts: dict[Any, int] | None = {}
        self.overflow_counts: dict[Any, int] | None = None  # counts of the first values met
        self.other = 0
        self.hashes = np.empty(0, dtype=np.uint64)  # the k smallest distinct hashes seen
        self.pending: list[np.ndarray] = []
        self.pending_size = 0

    def update(self, values: pd.Series) -> None:
        """Add a chunk of present values."""
        if len(values) == 0:
            return
        if self.numeric:
            self.update_numbers(values.to_numpy(dtype=np.float64))
        else:
            self._update(lambda: values.value_counts(sort=False), values.to_numpy)

    def update_numbers(self, x: np.ndarray) -> None:
        """:meth:`update` of present numbers as a float64 array."""
        if len(x):
            self._update(lambda: self._number_counts(x), lambda: x)

    def update_arrow(self, values: pa.Array | pa.ChunkedArray) -> None:
        """:meth:`update` of present booleans or strings given as Arrow: the same result,
        counted by Arrow, so that strings become Python objects only to be hashed past
        the exact limit."""
        if len(values) == 0:
            return

        def counts() -> pd.Series:
            counted = pc.value_counts(values)
            index = _object_array(counted.field("values").to_pylist())
            return pd.Series(counted.field("counts").to_numpy(), index=index)

        self._update(counts, lambda: values.to_numpy(zero_copy_only=False))

    def _update(self, value_counts, keys) -> None:
        """``value_counts()``: the chunk's counts by value (``None``: more distinct numbers
        than the limit); ``keys()``: its values, to hash."""
        if self.counts is not None or not self.numeric:
            chunk = value_counts()
            if chunk is None:  # more distinct numbers than the limit: sketch only
                self._overflow()
                self._add_hashes(self._hash(keys()))
                return
            if self.counts is not None:
                room = self.count_limit + 1 - len(self.counts)
                fits = chunk.index.isin(list(self.counts)) if self.counts else None
                if fits is not None:
                    new = chunk[~fits]
                    self._tally(self.counts, chunk[fits])
                else:
                    new = chunk
                self._tally(self.counts, new.iloc[:room])
                if len(self.counts) <= self.count_limit:
                    return
                self.other = int(new.iloc[room:].sum())
                self._overflow()
            else:
                known = chunk.index.isin(list(self.overflow_counts))
                self._tally(self.overflow_counts, chunk[known])
                self.other += int(chunk[~known].sum())
        self._add_hashes(self._hash(keys()))

    def _hash(self, values) -> np.ndarray:
        if self.numeric:
            return hash_floats(np.asarray(values, dtype=np.float64))
        if not (isinstance(values, np.ndarray) and values.dtype == object):
            values = _object_array([str(v) for v in values])
        return pd.util.hash_array(values)

    def _number_counts(self, x: np.ndarray) -> pd.Series | None:
        """The counts of a chunk of numbers; ``None`` when they alone pass the limit (found
        by sorting, cheaper than counting a column of distinct values)."""
        if len(np.unique(x[: 4 * self.count_limit])) > self.count_limit:
            return None  # the chunk's head alone passes the limit: no need to sort it all
        x = np.sort(x)
        starts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]]) if len(x) else np.empty(0, int)
        if len(starts) > self.count_limit:
            return None
        counts = np.diff(np.r_[starts, len(x)])
        return pd.Series(counts, index=x[starts])

    @staticmethod
    def _tally(counts: dict, chunk: pd.Series) -> None:
        for value, n in zip(chunk.index.tolist(), chunk.tolist(), strict=True):
            counts[value] = counts.get(value, 0) + n

    def _overflow(self) -> None:
        """Past the limit: keep the first ``count_limit`` values' counts, sketch the rest."""
        values = list(self.counts)
        self.overflow_counts = {v: self.counts[v] for v in values[: self.count_limit]}
        self.other += sum(self.counts[v] for v in values[self.count_limit :])
        self._add_hashes(self._hash(values))
        self.counts = None

    def _add_hashes(self, keys: np.ndarray) -> None:
        # Candidates below the threshold wait in a buffer; the sketch is compacted (sorted,
        # deduplicated, cut to its size) only when the buffer outgrows it.
        if len(self.hashes) >= DISTINCT_SKETCH:
            keys = keys[keys < self.hashes[DISTINCT_SKETCH - 1]]
            if len(keys) == 0:
                return
        self.pending.append(keys)
        self.pending_size += len(keys)
        if self.pending_size >= DISTINCT_SKETCH or len(self.hashes) < DISTINCT_SKETCH:
            self._compact()

    def _compact(self) -> None:
        if self.pending:
            merged = np.concatenate([self.hashes, *self.pending])
            if len(merged) > 2 * DISTINCT_SKETCH:
                # The sketch's distinct values are among the 2k smallest when those hold
                # k distinct ones: partition, then sort only them.
                smallest = _unique(
                    np.partition(merged, 2 * DISTINCT_SKETCH)[: 2 * DISTINCT_SKETCH]
                )
                if len(smallest) >= DISTINCT_SKETCH:
                    merged = smallest
            self.hashes = _unique(merged)[:DISTINCT_SKETCH]
            self.pending, self.pending_size = [], 0

    def merge(self, other: _Distinct) -> None:
        other._compact()
        if other.counts is not None:
            if self.counts is not None:
                for value, n in other.counts.items():
                    self.counts[value] = self.counts.get(value, 0) + n
                if len(self.counts) > self.count_limit:
                    self._overflow()
                return
            values = pd.Series(
                np.repeat(_object_array(list(other.counts)), list(other.counts.values()))
            )
            if len(values):
                self.update(values)
            return
        if self.counts is not None:
            mine, self.counts = self.counts, None
            self.overflow_counts = dict(other.overflow_counts)
            self.other = other.other
            self.hashes = other.hashes.copy()
            for value, n in mine.items():
                if value in self.overflow_counts:
                    self.overflow_counts[value] += n
                else:
                    self.other += n
            self._add_hashes(self._hash(list(mine)))
            return
        for value, n in other.overflow_counts.items():
            if value in self.overflow_counts:
                self.overflow_counts[value] += n
            else:
                self.other += n
        self.other += other.other
        self._add_hashes(other.hashes)

    @property
    def exact(self) -> bool:
        return self.counts is not None

    def n_unique(self) -> int:
        self._compact()
        if self.counts is not None:
            return len(self.counts)
        if len(self.hashes) < DISTINCT_SKETCH:
            return len(self.hashes)
        return int(round((DISTINCT_SKETCH - 1) / (float(self.hashes[-1]) / _HASH_SPACE)))

    def value_counts(self) -> dict[Any, int]:
        return dict(self.counts if self.counts is not None else self.overflow_counts)


_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_NAN_BITS = np.array(np.nan).view(np.uint64)
_NEGATIVE_ZERO_BITS = np.array(-0.0).view(np.uint64)
_HASH_STEP = 1 << 15


def hash_floats(x: np.ndarray) -> np.ndarray:
    """``pandas.util.hash_array`` of a float64 array, the same values, at about a third
    of its CPU: the same mix (-0.0 and every NaN canonicalised, then splitmix64's
    finaliser), computed in place a cache-sized step at a time, where pandas makes a
    temporary array of the whole input for each of its operations."""
    out = np.empty(len(x), dtype=np.uint64)
    bits = x.view(np.uint64)
    scratch = np.empty(min(len(x), _HASH_STEP), dtype=np.uint64)
    for start in range(0, len(x), _HASH_STEP):
        h = out[start : start + _HASH_STEP]
        t = scratch[: len(h)]
        np.copyto(h, bits[start : start + _HASH_STEP])
        h[h == _NEGATIVE_ZERO_BITS] = 0
        h[np.isnan(x[start : start + _HASH_STEP])] = _NAN_BITS
        for shift, multiplier in ((30, _MIX1), (27, _MIX2), (31, None)):
            np.right_shift(h, np.uint64(shift), out=t)
            np.bitwise_xor(h, t, out=h)
            if multiplier is not None:
                np.multiply(h, multiplier, out=h)
    return out


def _unique(x: np.ndarray) -> np.ndarray:
    """``np.unique`` of an integer array, by sorting: NumPy's hash-based unique took
    ~0.5 ms for the sketch's 8,192 candidates, a sort ~0.1 (the 1M-row upload compacts
    each numeric column's sketch once per row group)."""
    x = np.sort(x)
    if len(x) < 2:
        return x
    keep = np.empty(len(x), dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def _object_array(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


class ColumnAccumulator:
    """What one column of a table keeps while chunks stream past.

    Parameters
    ----------
    name, kind:
        The column and its type: ``numeric``, ``boolean`` or ``categorical``.
    count_limit:
        Distinct values counted exactly (see the module docstring).
    quantile_capacity:
        Values kept for quantiles of a numeric column; 0 keeps none.
    seed:
        Seeds the quantile sample's priorities: the same chunks give the same sample.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        *,
        count_limit: int = 1000,
        quantile_capacity: int = DEFAULT_QUANTILE_CAPACITY,
        seed: int = 0,
    ):
        if kind not in ("numeric", "boolean", "categorical"):
            raise ValueError(f"unknown column type {kind!r}")
        self.name, self.kind = name, kind
        self.count = 0
        self.missing = 0
        self.distinct = _Distinct(count_limit, numeric=kind == "numeric")
        # numeric
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.not_01 = 0  # values seen that are not 0 or 1 (counted until there is one)
        self.capacity = quantile_capacity if kind == "numeric" else 0
        self.sample = np.empty(0, dtype=np.float64)
        self.priority = np.empty(0, dtype=np.float64)
        self.rng = np.random.default_rng(seed)
        # boolean
        self.n_true = 0

    def update(self, values: pd.Series) -> None:
        """Add one chunk of the column (normalised: float64, boolean or strings)."""
        present_mask = values.notna().to_numpy()
        n_present = int(present_mask.sum())
        self.missing += len(values) - n_present
        if n_present == 0:
            return
        if self.kind == "numeric":
            x = values.to_numpy(dtype="float64", na_value=np.nan)[present_mask]
            self._update_numeric(x)
            self.distinct.update(pd.Series(x))
        elif self.kind == "boolean":
            present = values[present_mask].astype(bool)
            self.n_true += int(present.sum())
            self.count += n_present
            self.distinct.update(present)
        else:
            self.count += n_present
            self.distinct.update(values[present_mask].astype("str"))

    def update_arrow(self, values: pa.Array | pa.ChunkedArray) -> None:
        """:meth:`update` of a chunk given as Arrow (float64, boolean or string, nulls
        missing; NaN is missing too, as pandas counts it): the same statistics, without
        a pandas Series on the way."""
        if self.kind == "numeric":
            x = values.to_numpy(zero_copy_only=False)
            present_mask = ~np.isnan(x)
            n_present = int(np.count_nonzero(present_mask))
            self.missing += len(x) - n_present
            if n_present == 0:
                return
            if n_present < len(x):
                x = x[present_mask]
            self._update_numeric(x)
            self.distinct.update_numbers(x)
            return
        present = pc.drop_null(values) if values.null_count else values
        self.missing += len(values) - len(present)
        if len(present) == 0:
            return
        self.count += len(present)
        if self.kind == "boolean":
            self.n_true += int(pc.sum(present).as_py() or 0)
        self.distinct.update_arrow(present)

    def _update_numeric(self, x: np.ndarray) -> None:
        n = len(x)
        mean = float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        self._merge_moments(n, mean, m2)
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        if self.not_01 == 0:  # only whether it is 0 is used: once not, no more passes
            self.not_01 = int(n - np.count_nonzero((x == 0.0) | (x == 1.0)))
        if self.capacity:
            self._add_sample(x, self.rng.random(n))

    def _merge_moments(self, n: int, mean: float, m2: float) -> None:
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def _add_sample(self, values: np.ndarray, priority: np.ndarray) -> None:
        if len(self.sample) >= self.capacity:
            keep = priority < self.priority.max()
            values, priority = values[keep], priority[keep]
            if len(values) == 0:
                return
        values = np.concatenate([self.sample, values])
        priority = np.concatenate([self.priority, priority])
        if len(values) > self.capacity:
            smallest = np.argpartition(priority, self.capacity - 1)[: self.capacity]
            values, priority = values[smallest], priority[smallest]
        self.sample, self.priority = values, priority

    def merge(self, other: ColumnAccumulator) -> None:
        """Fold another part of the same column into this one."""
        if (other.name, other.kind) != (self.name, self.kind):
            raise ValueError(f"cannot merge column {other.name!r} into {self.name!r}")
        self.missing += other.missing
        if self.kind == "numeric":
            if other.count:
                self._merge_moments(other.count, other.mean, other.m2)
                self.min, self.max = min(self.min, other.min), max(self.max, other.max)
                self.not_01 += other.not_01
                if self.capacity:
                    self._add_sample(other.sample, other.priority)
        else:
            self.count += other.count
            self.n_true += other.n_true
        self.distinct.merge(other.distinct)

    def finish(self) -> ColumnStats:
        """The column's statistics so far."""
        stats = ColumnStats(
            name=self.name,
            type=self.kind,
            count=self.count,
            missing=self.missing,
            n_unique=self.distinct.n_unique(),
            n_unique_exact=self.distinct.exact,
            counts_exact=self.distinct.exact,
        )
        counts = self.distinct.value_counts()
        if self.kind == "numeric":
            if self.count:
                stats.min, stats.max = self.min, self.max
                stats.mean, stats.variance = self.mean, max(self.m2 / self.count, 0.0)
                stats.only_01 = self.not_01 == 0
            if self.capacity:
                stats.sample = np.sort(self.sample)
                stats.sample_exact = self.count <= self.capacity
            if self.distinct.exact:  # past the limit, numbers keep no counts
                stats.counts = {_number_text(float(v)): n for v, n in counts.items()}
        elif self.kind == "boolean":
            stats.n_true, stats.n_false = self.n_true, self.count - self.n_true
            stats.counts = {("true" if v else "false"): n for v, n in counts.items()}
        else:
            stats.counts = {str(v): n for v, n in counts.items()}
        if stats.counts is not None:
            stats.other = self.count - sum(stats.counts.values())
        return stats


def _number_text(value: float) -> str:
    """A number as a category name: ``3.0`` → ``"3"`` (as ``preprocessing.category_text``)."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**63 else str(value)


class TableAccumulator:
    """Per-column accumulators of a table with known column types.

    Parameters
    ----------
    types:
        Column name → ``numeric`` | ``boolean`` | ``categorical``, in order.
    count_limit:
        Distinct values counted exactly per column.
    quantile_capacity:
        Values sampled per numeric column for quantiles (0: none); capped so that all
        numeric columns together keep at most ``QUANTILE_BUDGET_VALUES``.
    seed:
        Seeds the quantile samples.
    """

    def __init__(
        self,
        types: dict[str, str],
        *,
        count_limit: int = 1000,
        quantile_capacity: int = DEFAULT_QUANTILE_CAPACITY,
        seed: int = 0,
    ):
        n_numeric = sum(kind == "numeric" for kind in types.values())
        if n_numeric and quantile_capacity:
            quantile_capacity = max(
                1000, min(quantile_capacity, QUANTILE_BUDGET_VALUES // n_numeric)
            )
        self.columns = {
            name: ColumnAccumulator(
                name,
                kind,
                count_limit=count_limit,
                quantile_capacity=quantile_capacity,
                seed=seed + i,
            )
            for i, (name, kind) in enumerate(types.items())
        }
        self.rows = 0

    def update(self, frame: pd.DataFrame) -> None:
        """Add one chunk: a frame with (at least) every column, normalised."""
        for name, accumulator in self.columns.items():
            accumulator.update(frame[name])
        self.rows += len(frame)

    def update_arrow(self, table: pa.Table | pa.RecordBatch) -> None:
        """:meth:`update` of a chunk given as Arrow columns of the stored types (see
        :meth:`ColumnAccumulator.update_arrow`)."""
        for name, accumulator in self.columns.items():
            accumulator.update_arrow(table.column(name))
        self.rows += table.num_rows

    def merge(self, other: TableAccumulator) -> None:
        """Fold the accumulator of another part of the same table into this one."""
        for name, accumulator in self.columns.items():
            accumulator.merge(other.columns[name])
        self.rows += other.rows

    def finish(self) -> TableStats:
        """The statistics of every column so far."""
        return TableStats(self.rows, {n: a.finish() for n, a in self.columns.items()})


@dataclass
class TableStats:
    """Statistics of a table: its row count and each column's :class:`ColumnStats`."""

    rows: int
    columns: dict[str, ColumnStats]

    def __getitem__(self, name: str) -> ColumnStats:
        return self.columns[name]


def table_stats(
    frame: pd.DataFrame, types: dict[str, str], *, chunk_rows: int = 1_000_000, **options
) -> TableStats:
    """Statistics of a whole in-memory frame, summarised ``chunk_rows`` at a time."""
    accumulator = TableAccumulator(types, **options)
    for start in range(0, max(len(frame), 1), chunk_rows):
        accumulator.update(frame.iloc[start : start + chunk_rows])
    return accumulator.finish()
