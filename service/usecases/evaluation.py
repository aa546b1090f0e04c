"""Evaluate a stored model on labelled rows: JSON records, or a CSV body read in chunks.

The rows carry the model's target column (or another column named by ``target``) beside
the features. Each row is predicted as predict would, and its true label compared:
accuracy, macro-F1, log-loss, expected calibration error, a reliability diagram, the
confusion matrix and per-class precision, recall, F1 and support
(:class:`service.ml.evaluation.Metrics`). Rows whose label is missing are left out and
counted, as training leaves them out. A label that is not one of the model's classes is a
400 naming its row, and so is a bad feature cell; no answer is given until every row was
read. A CSV body is read ``CHUNK_ROWS`` at a time, so memory does not grow with its length.
"""

from __future__ import annotations

import math
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa

from service.db.session import Database
from service.ml.batch import encode
from service.ml.evaluation import Metrics
from service.ml.preprocessing import label_key
from service.ml.tabular import MISSING_MARKERS
from service.usecases import models
from service.usecases.batch_predict import CsvLimits
from service.usecases.errors import InvalidRequest


class LabelCodes:
    """True labels as given (JSON values or CSV text) → the model's class codes."""

    def __init__(self, classes: tuple):
        self.classes = classes
        self.keys = {label_key(c): i for i, c in enumerate(classes)}
        self.numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes)

    def code(self, value: Any) -> int | None:
        """The class code of ``value``; ``None`` for a missing label; -1 for an unknown."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, str):
            text = value.strip()
            if text in MISSING_MARKERS:
                return None
            if text in self.keys:
                return self.keys[text]
            if self.numeric:  # "3.0" for the class 3
                try:
                    number = float(text)
                except ValueError:
                    return -1
                return self.code(number)
            if text.lower() in ("true", "false"):
                return self.keys.get(text.lower(), -1)
            return -1
        if isinstance(value, bool):
            return self.keys.get("true" if value else "false", -1)
        if isinstance(value, (int, float)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            return self.keys.get(label_key(value), -1)
        return -1

    def unknown(self, value: Any, field: str) -> InvalidRequest:
        return InvalidRequest(
            f"{value!r} is not a class of the model; its classes are "
            f"{[label_key(c) for c in self.classes]}",
            field,
        )


def evaluate_records(
    db: Database,
    cache: models.ModelCache,
    tenant: str,
    name: str,
    version: int | None,
    records: list,
    *,
    target: str | None = None,
    max_rows: int = 10_000,
    max_columns: int = 1_000,
    max_cell_chars: int = 10_000,
) -> dict[str, Any]:
    """Metrics of a model version (``None``: the latest) on JSON records with labels."""
    if len(records) > max_rows:
        raise InvalidRequest(f"at most {max_rows} rows per request; send CSV for more", "records")
    found = models.resolve_version(db, cache, tenant, name, version)
    bundle = models.loaded(db, cache, found)
    target = target or found.target
    if not any(isinstance(r, dict) and target in r for r in records):
        raise _no_target(target, found.target)
    labels = LabelCodes(bundle.classes)
    codes, features = [], []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidRequest("must be an object of column: value", f"records[{i}]")
        value = record.get(target)
        code = labels.code(value)
        if code == -1:
            raise labels.unknown(value, f"records[{i}].{target}")
        if code is None:
            continue
        codes.append(code)
        features.append({k: v for k, v in record.items() if k != target})
    metrics = Metrics(bundle.classes)
    if features:
        probabilities = bundle.predict_records(
            features, max_columns=max_columns, max_cell_chars=max_cell_chars
        )
        metrics.add(probabilities, np.array(codes))
    return _answer(found, target, metrics, skipped=len(records) - len(codes))


def evaluate_csv(
    db: Database,
    cache: models.ModelCache,
    tenant: str,
    name: str,
    version: int | None,
    stream: BinaryIO,
    limits: CsvLimits,
    *,
    target: str | None = None,
) -> dict[str, Any]:
    """Metrics of a model version on a labelled CSV stream, read a chunk at a time."""
    found = models.resolve_version(db, cache, tenant, name, version)
    bundle = models.loaded(db, cache, found)
    target = target or found.target
    labels = LabelCodes(bundle.classes)
    metrics = Metrics(bundle.classes)
    types = {name: kind for name, kind in bundle.encoder.types.items() if name != target}
    reader = limits.rows(stream, types, field="file")
    if target not in reader.header:
        raise _no_target(target, found.target)
    bundle.check_columns((name for name in reader.header if name != target), field="file")
    skipped = rows = 0
    for batch in reader:
        column = pd.Series(
            batch.column(target).to_pandas(), index=pd.RangeIndex(rows, rows + batch.num_rows)
        )
        rows += batch.num_rows
        codes = _chunk_codes(labels, column, target)
        labelled = codes >= 0
        skipped += int((~labelled).sum())
        if labelled.any():
            x = encode(bundle.encoder, batch.filter(pa.array(labelled)))
            metrics.add(bundle.predict_inputs(x), codes[labelled])
    return _answer(found, target, metrics, skipped=skipped)


def _chunk_codes(labels: LabelCodes, column: pd.Series, target: str) -> np.ndarray:
    """Codes of one chunk's labels, -1 where missing; one lookup per distinct value."""
    index, distinct = pd.factorize(column, use_na_sentinel=True)
    lookup = np.empty(len(distinct) + 1, dtype=np.int64)
    lookup[-1] = -1  # the NA sentinel
    for j, value in enumerate(distinct):
        code = labels.code(value)
        if code == -1:
            row = int(column.index[np.flatnonzero(index == j)[0]])
            raise labels.unknown(value, f"file[{row}].{target}")
        lookup[j] = -1 if code is None else code
    return lookup[index]


def _no_target(target: str, model_target: str) -> InvalidRequest:
    hint = "" if target != model_target else " (the model's target)"
    return InvalidRequest(
        f"the rows have no {target!r} column{hint}: evaluate needs the true label of each "
        "row; name another column with ?target=",
        "target",
    )


def _answer(found, target: str, metrics: Metrics, *, skipped: int) -> dict[str, Any]:
    result = metrics.result()
    if result is None:
        raise InvalidRequest(f"no row has a {target!r} label to compare with", "target")
    return {
        "model": {"name": found.name, "version": found.version},
        "target": target,
        "skipped_rows": skipped,
        **result,
    }
