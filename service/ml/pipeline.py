"""From a stored table to tensors ready for the trainer: select, split, fit, encode."""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from service.ml.errors import DataError
from service.ml.ingest import batch_frame
from service.ml.preprocessing import (
    FeatureEncoder,
    LabelEncoder,
    label_key,
    stratified_folds,
    stratified_split,
    validation_mask,
)
from service.ml.stats import TableAccumulator
from service.ml.tabular import convert_column
from service.ml.training import (
    Trainer,
    TrainingConfig,
    architecture_for,
    folds_for,
    to_tensors,
)


@dataclass
class PreparedData:
    """The encoded splits with the fitted encoders."""

    encoder: FeatureEncoder
    labels: LabelEncoder
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    dropped_rows: int
    # k-fold bagging: each row's fold (then the validation rows are the training rows)
    folds: torch.Tensor | None = None

    @property
    def n_folds(self) -> int:
        """Bagging folds, 0 with a separate validation split."""
        return 0 if self.folds is None else int(self.folds.max()) + 1

    def trainer(self, config: TrainingConfig, device: torch.device | None = None) -> Trainer:
        """A trainer for these splits with the network ``config`` describes, on ``device``
        (default the CPU)."""
        arch = architecture_for(
            config,
            self.encoder.n_inputs,
            len(self.labels.classes),
            self.encoder.numeric_inputs,
            folds=self.n_folds,
        )
        return Trainer(
            arch,
            config,
            self.x_train,
            self.y_train,
            self.x_val,
            self.y_val,
            class_weights=self.class_weights(config.class_weight),
            folds=self.folds,
            device=device or torch.device("cpu"),
        )

    def notes(self) -> list[str]:
        """What preparing the data decided, for the job's summary."""
        notes = list(self.encoder.notes)
        if self.dropped_rows:
            notes.insert(0, f"{self.dropped_rows} row(s) without a target value were left out")
        return notes

    def class_weights(self, spec: str | dict | None) -> torch.Tensor | None:
        """Loss weight per class: ``balanced`` (inverse frequency in the training split),
        a mapping of class label (as text) to weight (others 1.0), or ``None``."""
        if spec is None:
            return None
        n_classes = len(self.labels.classes)
        if spec == "balanced":
            counts = np.bincount(self.y_train.numpy(), minlength=n_classes)
            weights = len(self.y_train) / (n_classes * np.maximum(counts, 1))
        else:
            keys = {label_key(label): i for i, label in enumerate(self.labels.classes)}
            unknown = sorted(set(spec) - set(keys))
            if unknown:
                raise DataError(
                    f"class_weight names {unknown[0]!r}, which is not a class of the target; "
                    f"the classes are {sorted(keys)}",
                    "hyperparameters.class_weight",
                )
            weights = np.ones(n_classes)
            for key, weight in spec.items():
                weights[keys[key]] = weight
        return torch.tensor(weights, dtype=torch.float32)


def prepare(
    frame: pd.DataFrame,
    target: str,
    feature_types: dict[str, str],
    *,
    validation_fraction: float,
    seed: int,
    scaling: str = "standard",
    folds: int | str = 0,
) -> PreparedData:
    """Drop rows without a target, split stratified, fit the encoder on the training part.

    Parameters
    ----------
    frame:
        The stored, normalised table.
    target:
        The column to predict.
    feature_types:
        Feature column → type, in input order.
    validation_fraction, seed:
        The share of each class held out, and the seed of the split.
    scaling:
        How numeric columns are scaled (``FeatureEncoder.fit``): the config's ``scaling``.
    folds:
        k-fold bagging (see ``folds_for``): with k >= 2 folds the encoder is fitted on
        every labelled row, which is both training and (out of fold) validation data.
    """
    labelled = frame[frame[target].notna()].reset_index(drop=True)
    for name, kind in feature_types.items():
        labelled[name] = convert_column(labelled[name], kind, name)
    labels = LabelEncoder.fit(labelled[target])
    if len(labels.classes) < 2:
        raise DataError(f"the target column {target!r} needs at least two classes", "target")
    codes = labels.encode(labelled[target])
    features = labelled[list(feature_types)]
    dropped = len(frame) - len(labelled)
    k = folds_for(folds, len(labelled))
    if k >= 2:
        encoder = FeatureEncoder.fit(features, feature_types, scaling)
        x, y = to_tensors(encoder.transform(features), codes)
        fold = torch.from_numpy(stratified_folds(codes, k, seed))
        return PreparedData(encoder, labels, x, y, x, y, dropped_rows=dropped, folds=fold)
    train_rows, val_rows = stratified_split(codes, validation_fraction, seed)
    encoder = FeatureEncoder.fit(features.iloc[train_rows], feature_types, scaling)
    x_train, y_train = to_tensors(encoder.transform(features.iloc[train_rows]), codes[train_rows])
    x_val, y_val = to_tensors(encoder.transform(features.iloc[val_rows]), codes[val_rows])
    return PreparedData(
        encoder, labels, x_train, y_train, x_val, y_val, dropped_rows=len(frame) - len(labelled)
    )


# --- bounded memory: the same preparation from a Parquet file, into memory-mapped files ---

ENCODED_FORMAT = 2


def train_bundle(data: PreparedData, config: TrainingConfig):
    """Train to the end without a caller in the loop (benchmarks, tests): the model bundle
    and the trainer it came from."""
    from service.ml.inference import ModelBundle

    trainer = data.trainer(config)
    for _ in trainer.fit():
        pass
    _, state = trainer.final_state()
    bundle = ModelBundle.from_state(trainer.arch, data.encoder, data.labels.classes, state)
    return bundle, trainer


def encode_file(
    parquet_path: str | Path,
    target: str,
    feature_types: dict[str, str],
    out: str | Path,
    *,
    validation_fraction: float,
    seed: int,
    scaling: str = "standard",
    folds: int | str = 0,
) -> None:
    """:func:`prepare`, a row group at a time: the encoded splits go to files in ``out``.

    Three passes over the file: the target (labels, and the class codes and the
    stratified split written to files and memory-mapped), the statistics of the training
    rows (``ml.stats``), then the encoding, written to ``x_train.f32``, ``y_train.i64``,
    ``x_val.f32``, ``y_val.i64`` with ``meta.json`` (the encoders and shapes). Nothing of
    the table's length is held in the process's own memory, only one row group at a time.
    The result equals :func:`prepare` on the whole table (same rows, same order, same fit).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parquet = pq.ParquetFile(parquet_path, memory_map=True)
    split = _split_targets(parquet, target, out, validation_fraction, seed, folds)
    batches = functools.partial(_labelled_batches, parquet, feature_types, target, split)
    # Pass 2: statistics of the training rows; the encoder fitted from them.
    accumulator = TableAccumulator(feature_types, seed=seed)
    for features, validation, _ in batches():
        accumulator.update(features[~validation] if validation.any() else features)
    encoder = FeatureEncoder.fit_stats(accumulator.finish(), feature_types, scaling=scaling)
    n_train, n_val = _write_encoded(batches(), split, encoder, out)
    meta = {
        "format": ENCODED_FORMAT,
        "encoder": encoder.to_json(),
        "classes": list(split.labels.classes),
        "n_train": n_train,
        "n_val": n_val,
        "width": encoder.n_inputs,
        "dropped_rows": int(parquet.metadata.num_rows - len(split.codes)),
    }
    for name in _SPLIT_FILES:
        (out / name).unlink(missing_ok=True)
    (out / "meta.json").write_text(json.dumps(meta))


# The split's working files: each labelled row's class and whether it validates.
_SPLIT_FILES = ("codes.tmp.i64", "validation.tmp.bool")


@dataclass
class _Split:
    """A file's labels, and which labelled rows validate (the file's order throughout);
    the per-row arrays are memory maps of files in the output directory."""

    labels: LabelEncoder
    codes: np.ndarray  # int64, a labelled row: its class
    is_val: np.ndarray  # bool, a labelled row: it is in the validation split


def _row_groups(parquet: pq.ParquetFile, columns: list[str]) -> Iterator[pd.DataFrame]:
    for group in range(parquet.num_row_groups):
        yield batch_frame(parquet.read_row_group(group, columns=columns))


def _split_targets(
    parquet: pq.ParquetFile,
    target: str,
    out: Path,
    validation_fraction: float,
    seed: int,
    folds: int | str,
) -> _Split:
    """Pass 1: labels, codes and the stratified split (with k-fold bagging, every row
    trains and each fold's number goes to ``folds.i64``)."""
    n_labelled, distinct = 0, set()
    for frame in _row_groups(parquet, [target]):
        column = frame[target].dropna()
        n_labelled += len(column)
        distinct.update(column.unique().tolist())
    labels = LabelEncoder.fit(pd.Series(sorted(distinct, key=_sort_key), dtype=object))
    if len(labels.classes) < 2:
        raise DataError(f"the target column {target!r} needs at least two classes", "target")
    codes = _open_map(out / _SPLIT_FILES[0], np.int64, (n_labelled,))
    at = 0
    for frame in _row_groups(parquet, [target]):
        group = labels.encode(frame[target].dropna())
        codes[at : at + len(group)] = group
        at += len(group)
    is_val = _open_map(out / _SPLIT_FILES[1], np.bool_, (n_labelled,))
    k = folds_for(folds, n_labelled)
    if k >= 2:  # k-fold bagging: every row trains (and validates out of its fold)
        stratified_folds(codes, k, seed).astype(np.int64).tofile(out / "folds.i64")
    else:
        validation_mask(codes, validation_fraction, seed, out=is_val, scratch=out)
    return _Split(labels, codes, is_val)


def _labelled_batches(
    parquet: pq.ParquetFile, feature_types: dict[str, str], target: str, split: _Split
) -> Iterator[tuple[pd.DataFrame, np.ndarray, np.ndarray]]:
    """Feature chunks of labelled rows (types converted) with their is-validation mask and
    their class codes."""
    offset = 0
    for frame in _row_groups(parquet, [*feature_types, target]):
        labelled = frame[target].notna().to_numpy()
        rows = frame if labelled.all() else frame[labelled].reset_index(drop=True)
        features = pd.DataFrame(
            {name: convert_column(rows[name], kind, name) for name, kind in feature_types.items()},
            copy=False,
        )
        end = offset + len(rows)
        yield features, np.asarray(split.is_val[offset:end]), np.asarray(split.codes[offset:end])
        offset = end


def _write_encoded(
    batches: Iterator[tuple[pd.DataFrame, np.ndarray, np.ndarray]],
    split: _Split,
    encoder: FeatureEncoder,
    out: Path,
) -> tuple[int, int]:
    """Pass 3: encode ``batches`` into ``x_train.f32``/``x_val.f32`` and their class codes
    into ``y_train.i64``/``y_val.i64``; the number of training and validation rows."""
    n_val = int(np.count_nonzero(split.is_val))
    n_train = len(split.codes) - n_val
    width = encoder.n_inputs
    maps = {
        False: (
            _open_map(out / "x_train.f32", np.float32, (n_train, width)),
            _open_map(out / "y_train.i64", np.int64, (n_train,)),
        ),
        True: (
            _open_map(out / "x_val.f32", np.float32, (n_val, width)),
            _open_map(out / "y_val.i64", np.int64, (n_val,)),
        ),
    }
    at = {False: 0, True: 0}
    for features, validation, codes in batches:
        # One transform of the chunk, its rows then parted (the encoding is row by row).
        encoded = encoder.transform(features) if width else None
        for part, mask in ((False, ~validation), (True, validation)):
            n = int(mask.sum())
            if n:
                x, y = maps[part]
                if width:
                    x[at[part] : at[part] + n] = encoded if n == len(mask) else encoded[mask]
                y[at[part] : at[part] + n] = codes[mask]
                at[part] += n
    for pair in maps.values():
        for array in pair:
            if isinstance(array, np.memmap):
                array.flush()
    return n_train, n_val


def load_encoded(directory: str | Path) -> PreparedData:
    """The :class:`PreparedData` of :func:`encode_file`'s files, memory-mapped read-only:
    the features and the class codes stay in the page cache, not in the process's own
    memory (a read-only shared map is not even counted by ``RLIMIT_DATA``)."""
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    if meta.get("format") != ENCODED_FORMAT:
        raise DataError(f"unknown encoded-data format {meta.get('format')!r}")
    width = meta["width"]

    def features(name: str, rows: int) -> torch.Tensor:
        if rows == 0 or width == 0:
            return torch.zeros((rows, width), dtype=torch.float32)
        return _read_only_tensor(directory / name, np.float32, (rows, width))

    def codes(name: str) -> torch.Tensor:
        size = (directory / name).stat().st_size // 8
        if size == 0:
            return torch.zeros(0, dtype=torch.int64)
        return _read_only_tensor(directory / name, np.int64, (size,))

    if (directory / "folds.i64").exists():  # k-fold bagging: validation rows = training rows
        x, y = features("x_train.f32", meta["n_train"]), codes("y_train.i64")
        return PreparedData(
            FeatureEncoder.from_json(meta["encoder"]),
            LabelEncoder(tuple(meta["classes"])),
            x,
            y,
            x,
            y,
            dropped_rows=meta["dropped_rows"],
            folds=codes("folds.i64"),
        )
    return PreparedData(
        FeatureEncoder.from_json(meta["encoder"]),
        LabelEncoder(tuple(meta["classes"])),
        features("x_train.f32", meta["n_train"]),
        codes("y_train.i64"),
        features("x_val.f32", meta["n_val"]),
        codes("y_val.i64"),
        dropped_rows=meta["dropped_rows"],
    )


def _read_only_tensor(path: Path, dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor over a read-only map of ``path``. Training only reads its data (batches
    are gathered copies); writing into the tensor would fault, never change the file."""
    with warnings.catch_warnings():
        # torch warns once that it has no read-only tensors; these are never written.
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(np.memmap(path, dtype, "r", shape=shape))


def _open_map(path: Path, dtype, shape: tuple[int, ...]):
    """A new file of zeros of ``shape``, memory-mapped (an array when it is empty)."""
    if 0 in shape:
        path.touch()
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype, "w+", shape=shape)


def _sort_key(value):
    # LabelEncoder sorts the distinct values; booleans, numbers and strings never mix
    # within one stored column.
    return value
