"""JSON records straight to the network's input matrix: the predict fast path.

:class:`RecordEncoder` handles the common case of a predict request — every record an
object of the model's own features, numbers as JSON numbers, booleans as JSON booleans,
categories as strings — with a few NumPy operations for all numeric columns together,
without building a pandas frame. Anything else (text in a numeric column, markers such
as ``"NA"``, unknown columns, over-long cells, non-finite numbers, integer-coded
categories) makes :meth:`RecordEncoder.encode` return ``None``, and the caller takes the
general path (:func:`service.ml.tabular.frame_from_records` and
:meth:`FeatureEncoder.transform`), which gives the same matrix or names the field that
is wrong. The tests check that both paths agree.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np

from service.ml.preprocessing import FLOAT32_MAX, FeatureEncoder, QuantileColumns

_NONE = type(None)
_NUMBERS = frozenset({int, float, _NONE})
_BOOLEANS = frozenset({bool, _NONE})
_TEXT = frozenset({str, _NONE})


class _Block:
    """Numeric or boolean columns encoded together: value, then optional missing indicator."""

    def __init__(self, columns: list, offsets: list[int], kinds: frozenset):
        self.names = [c.name for c in columns]
        self.kinds = kinds
        self.offsets = np.array(offsets, dtype=np.intp)
        if kinds is _NUMBERS:
            self.fill = np.array([c.median for c in columns], dtype=np.float64)
            self.mean = np.array([c.mean for c in columns], dtype=np.float64)
            self.std = np.array([c.std for c in columns], dtype=np.float64)
            # Quantile-scaled columns (mean 0, std 1 above): then their knots' map.
            quantile = [c for c in columns if c.scaling == "quantile"]
            self.quantile = np.array(
                [i for i, c in enumerate(columns) if c.scaling == "quantile"], dtype=np.intp
            )
            self.rank_gauss = QuantileColumns(quantile) if quantile else None
            # Every column quantile-scaled (no column indexing), and then the mean 0 and
            # std 1 a no-op: the knots clamp what the clip to float32 would.
            self.all_quantile = len(quantile) == len(columns)
            self.scaled = not (
                self.all_quantile and (self.mean == 0).all() and (self.std == 1).all()
            )
        else:
            self.fill = np.array([c.fill for c in columns], dtype=np.float64)
        flagged = [i for i, c in enumerate(columns) if c.indicator]
        self.flagged = np.array(flagged, dtype=np.intp)
        self.indicator_offsets = self.offsets[self.flagged] + 1

    def encode(self, records: list[dict], out: np.ndarray) -> bool:
        names = self.names
        values = [[record.get(name) for name in names] for record in records]
        kinds = set(map(type, chain.from_iterable(values)))
        if not kinds <= self.kinds:
            return False
        try:
            x = np.array(values, dtype=np.float64)
        except OverflowError:  # integers beyond float64: the general path says so
            return False
        absent = np.isnan(x)
        nones = sum(row.count(None) for row in values) if _NONE in kinds else 0
        if int(absent.sum()) != nones or np.isinf(x).any():
            return False  # NaN or infinity sent as a number
        x = np.where(absent, self.fill, x)
        if self.kinds is _NUMBERS:
            if self.scaled:
                with np.errstate(over="ignore"):  # as FeatureEncoder.transform: clipped
                    x = np.clip((x - self.mean) / self.std, -FLOAT32_MAX, FLOAT32_MAX)
            if self.all_quantile:
                x = self.rank_gauss(x)
            elif self.rank_gauss is not None:
                x[:, self.quantile] = self.rank_gauss(x[:, self.quantile])
        out[:, self.offsets] = x
        if len(self.flagged):
            out[:, self.indicator_offsets] = absent[:, self.flagged]
        return True


class RecordEncoder:
    """The fast path of one fitted :class:`FeatureEncoder`, prepared once per model."""

    def __init__(self, encoder: FeatureEncoder):
        # Dropped columns are not read, so a record that has one takes the general path,
        # which still checks its cells.
        self.known = frozenset(n for n, kind in encoder.types.items() if kind != "dropped")
        self.n_inputs = encoder.n_inputs
        self.fast = True
        numeric: tuple[list, list[int]] = ([], [])
        boolean: tuple[list, list[int]] = ([], [])
        self.categorical: list[tuple[str, int, dict[str, int]]] = []
        offset = 0
        for column in encoder.columns:
            if column.type == "numeric":
                numeric[0].append(column)
                numeric[1].append(offset)
            elif column.type == "boolean":
                boolean[0].append(column)
                boolean[1].append(offset)
            elif column.type == "categorical":
                if column.numeric_codes:  # 3, 3.0 and "3" are one category: general path
                    self.fast = False
                slots = {name: i for i, name in enumerate(column.categories)}
                self.categorical.append((column.name, offset, slots))
            offset += column.width
        self.blocks = [
            _Block(columns, offsets, kinds)
            for (columns, offsets), kinds in ((numeric, _NUMBERS), (boolean, _BOOLEANS))
            if columns
        ]

    def encode(self, records: Any, *, max_cell_chars: int) -> np.ndarray | None:
        """The float32 input matrix of ``records``, or ``None`` for the general path."""
        if not self.fast or type(records) is not list or not records:
            return None
        known = self.known
        for record in records:
            if type(record) is not dict or not record.keys() <= known:
                return None
        out = np.zeros((len(records), self.n_inputs), dtype=np.float32)
        for block in self.blocks:
            if not block.encode(records, out):
                return None
        rows = np.arange(len(records))
        for name, offset, slots in self.categorical:
            values = [record.get(name) for record in records]
            if not set(map(type, values)) <= _TEXT:
                return None
            if max(len(v) if v is not None else 0 for v in values) > max_cell_chars:
                return None
            unseen = len(slots)  # unseen and missing values share the last slot
            codes = np.fromiter((slots.get(v, unseen) for v in values), np.intp, len(values))
            out[rows, offset + codes] = 1.0
        return out
