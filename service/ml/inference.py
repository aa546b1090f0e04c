"""A trained model as stored and served: safetensors weights plus a JSON description.

Nothing here unpickles: weights load with ``safetensors``, the rest is JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from service.ml.errors import DataError
from service.ml.folded import FoldedTabular
from service.ml.network import Architecture, TabularNet, build_network
from service.ml.preprocessing import FeatureEncoder
from service.ml.records import RecordEncoder
from service.ml.tabular import coerce_columns, frame_from_records

BUNDLE_FORMAT = 1
#: Requests of up to this many rows run the tabular network folded (:mod:`.folded`):
#: there the cost is the number of torch calls, which folding cuts; larger batches are
#: arithmetic, which the network's own layout does with fewer operations.
FOLDED_MAX_ROWS = 64


@dataclass
class ModelBundle:
    """Network, feature encoder and class labels: everything predict needs."""

    arch: Architecture
    encoder: FeatureEncoder
    classes: tuple[Any, ...]
    network: torch.nn.Module
    fast: RecordEncoder = field(init=False, repr=False)
    folded: FoldedTabular | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fast = RecordEncoder(self.encoder)
        self.folded = None
        if isinstance(self.network, TabularNet) and not self.network.training:
            self.folded = FoldedTabular(self.network, self.arch.activation)

    @classmethod
    def from_state(
        cls,
        arch: Architecture,
        encoder: FeatureEncoder,
        classes: tuple[Any, ...],
        state: dict[str, torch.Tensor],
    ) -> ModelBundle:
        """Build the network of ``arch`` and load ``state`` into it."""
        network = build_network(arch)
        network.load_state_dict(state)
        network.eval()
        return cls(arch, encoder, tuple(classes), network)

    def describe(self) -> dict[str, Any]:
        """The JSON half of the stored model."""
        return {
            "format": BUNDLE_FORMAT,
            "architecture": self.arch.to_json(),
            "preprocessing": self.encoder.to_json(),
            "classes": list(self.classes),
        }

    def weights(self) -> bytes:
        """The safetensors half of the stored model."""
        state = {k: v.contiguous() for k, v in self.network.state_dict().items()}
        return save_safetensors(state)

    @classmethod
    def load(cls, description: dict[str, Any], weights: bytes) -> ModelBundle:
        """Inverse of :meth:`describe` + :meth:`weights`."""
        if description.get("format") != BUNDLE_FORMAT:
            raise DataError(f"unknown model format {description.get('format')!r}")
        return cls.from_state(
            Architecture.from_json(description["architecture"]),
            FeatureEncoder.from_json(description["preprocessing"]),
            tuple(description["classes"]),
            load_safetensors(weights),
        )

    def predict_proba(self, frame: pd.DataFrame, *, field: str = "records") -> np.ndarray:
        """Probabilities of every class for every row, shape ``(rows, classes)``.

        ``frame`` holds cells as text or JSON scalars; columns the model does not
        know are a :class:`DataError`, absent feature columns are missing values.
        """
        self.check_columns(frame.columns, field=field)
        typed = coerce_columns(frame, self.encoder.types, field=field)
        return self.predict_inputs(self.encoder.transform(typed))

    def check_columns(self, names: Iterable[str], *, field: str = "records") -> None:
        """Refuse a column the model does not know (absent features are fine: missing)."""
        unknown = [name for name in names if name not in self.encoder.types]
        if unknown:
            raise DataError(
                f"unknown column {unknown[0]!r}; the model's features are "
                f"{sorted(self.encoder.types)}",
                f"{field}.{unknown[0]}",
            )

    def predict_records(
        self, records: Any, *, max_columns: int, max_cell_chars: int, where: str = "records"
    ) -> np.ndarray:
        """:meth:`predict_proba` of JSON records (a list of objects of scalars).

        The common case is encoded straight from the records (:mod:`service.ml.records`);
        anything else goes through a frame, which names the field that is wrong.
        """
        x = self.fast.encode(records, max_cell_chars=max_cell_chars)
        if x is not None:
            return self.predict_inputs(x)
        frame = frame_from_records(
            records,
            max_rows=len(records) if isinstance(records, list) else 0,
            max_columns=max_columns,
            max_cell_chars=max_cell_chars,
            field=where,
        )
        return self.predict_proba(frame, field=where)

    def predict_inputs(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of every class for rows already encoded (``encoder``'s inputs)."""
        if self.folded is not None and 0 < len(x) <= FOLDED_MAX_ROWS:
            return self.folded.probabilities(x)
        with torch.inference_mode():
            return torch.softmax(self.network(torch.from_numpy(x)).double(), dim=1).numpy()

    def labels(self, probabilities: np.ndarray) -> list[Any]:
        """The most probable class of each row."""
        return [self.classes[i] for i in probabilities.argmax(axis=1)]
