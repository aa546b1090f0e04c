"""From a stored table to tensors ready for the trainer: select, split, fit, encode."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from service.ml.errors import DataError
from service.ml.preprocessing import (
    FeatureEncoder,
    LabelEncoder,
    label_key,
    stratified_folds,
    stratified_split,
)
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
    return PreparedData(encoder, labels, x_train, y_train, x_val, y_val, dropped_rows=dropped)


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
