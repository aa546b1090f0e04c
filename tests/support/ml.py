"""The ML core's test set-ups: prepared splits and a trainer resumed from a checkpoint."""

from __future__ import annotations

import json

import torch

from service.ml.pipeline import PreparedData, prepare
from service.ml.tabular import infer_columns, read_csv
from service.ml.training import Trainer, TrainingConfig
from tests.support.data import MIXED_TYPES, mixed_csv


def mixed_prepared(rows: int = 300, seed: int = 0) -> PreparedData:
    """:func:`mixed_csv` read, typed and split as a job's data (a fifth for validation)."""
    frame, _ = infer_columns(read_csv(mixed_csv(rows), max_rows=10_000, max_columns=10))
    return prepare(frame, "species", MIXED_TYPES, validation_fraction=0.2, seed=seed)


def resumed_after(data: PreparedData, config: TrainingConfig, epoch: int) -> tuple[list, Trainer]:
    """Train up to ``epoch``, checkpoint (through strict JSON, as stored), then restore a
    new trainer under other torch RNG state, as a new process would have. Returns the
    records so far and the restored trainer, not yet fitted further."""
    first = data.trainer(config)
    head = []
    for record in first.fit():
        head.append(record)
        if record.epoch == epoch:
            break
    tensors, state = first.checkpoint()
    torch.manual_seed(12345)
    resumed = data.trainer(config)
    resumed.restore(tensors, json.loads(json.dumps(state)))
    return head, resumed
