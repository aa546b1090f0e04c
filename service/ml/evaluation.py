"""Metrics of predicted probabilities against true labels: plain JSON data.

:class:`Metrics` accumulates chunk by chunk (counts and sums only, so a labelled file of
any length is evaluated in bounded memory) and answers accuracy, macro-F1, log-loss,
expected calibration error, a reliability diagram, the confusion matrix and per-class
precision, recall, F1 and support. :func:`evaluate` is the same for a network on the
validation split (the final metrics of a training job).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from service.ml.preprocessing import label_key

#: Equal-width bins of the top probability, for the ECE and the reliability diagram.
CALIBRATION_BINS = 15
#: Probabilities are clipped to this before the log, as scikit-learn's log_loss does.
EPSILON = 1e-15


class Metrics:
    """Classification metrics accumulated over chunks of rows.

    Parameters
    ----------
    classes:
        The class labels in code order (the model's output order).
    """

    def __init__(self, classes: tuple | list):
        self.classes = tuple(classes)
        n = len(self.classes)
        self.confusion = np.zeros((n, n), dtype=np.int64)
        self.log_loss_sum = 0.0
        self.bin_count = np.zeros(CALIBRATION_BINS, dtype=np.int64)
        self.bin_confidence = np.zeros(CALIBRATION_BINS)
        self.bin_correct = np.zeros(CALIBRATION_BINS)

    @property
    def rows(self) -> int:
        """Rows added so far."""
        return int(self.confusion.sum())

    def add(self, probabilities: np.ndarray, codes: np.ndarray) -> None:
        """Add rows: their ``(rows, classes)`` probabilities and true class codes."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        codes = np.asarray(codes, dtype=np.int64)
        if len(codes) == 0:
            return
        predicted = probabilities.argmax(axis=1)
        np.add.at(self.confusion, (codes, predicted), 1)
        p_true = probabilities[np.arange(len(codes)), codes]
        self.log_loss_sum += float(-np.log(np.clip(p_true, EPSILON, 1.0)).sum())
        confidence = probabilities.max(axis=1)
        bins = np.minimum((confidence * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
        np.add.at(self.bin_count, bins, 1)
        np.add.at(self.bin_confidence, bins, confidence)
        np.add.at(self.bin_correct, bins, (predicted == codes).astype(np.float64))

    def result(self) -> dict[str, Any] | None:
        """The metrics as JSON-safe data; ``None`` before any row was added."""
        rows = self.rows
        if rows == 0:
            return None
        n = len(self.classes)
        confusion = self.confusion
        true_positive = np.diag(confusion).astype(float)
        predicted_count = confusion.sum(axis=0)
        actual_count = confusion.sum(axis=1)
        precision = np.divide(
            true_positive, predicted_count, out=np.zeros(n), where=predicted_count > 0
        )
        recall = np.divide(true_positive, actual_count, out=np.zeros(n), where=actual_count > 0)
        f1 = np.divide(
            2 * precision * recall,
            precision + recall,
            out=np.zeros(n),
            where=(precision + recall) > 0,
        )
        present = actual_count > 0
        gaps = np.abs(self.bin_correct - self.bin_confidence)
        width = 1 / CALIBRATION_BINS
        return {
            "rows": rows,
            "accuracy": float(true_positive.sum() / rows),
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "log_loss": self.log_loss_sum / rows,
            "ece": float(gaps.sum() / rows),
            "per_class": {
                label_key(label): {
                    "precision": float(precision[i]),
                    "recall": float(recall[i]),
                    "f1": float(f1[i]),
                    "support": int(actual_count[i]),
                }
                for i, label in enumerate(self.classes)
            },
            "confusion_matrix": {
                "labels": [label_key(label) for label in self.classes],
                "rows_are": "true class",
                "columns_are": "predicted class",
                "counts": confusion.tolist(),
            },
            "reliability": [
                {
                    "lower": round(b * width, 10),
                    "upper": round((b + 1) * width, 10),
                    "count": int(self.bin_count[b]),
                    "confidence": _mean(self.bin_confidence[b], self.bin_count[b]),
                    "accuracy": _mean(self.bin_correct[b], self.bin_count[b]),
                }
                for b in range(CALIBRATION_BINS)
            ],
        }


def _mean(total: float, count: int) -> float | None:
    return float(total / count) if count else None


def evaluate(
    network: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    classes: tuple,
    folds: torch.Tensor | None = None,
) -> dict | None:
    """:class:`Metrics` of a network on encoded rows (the validation split).

    Parameters
    ----------
    network:
        The trained network (put in eval mode here).
    x, y:
        Validation features and class codes.
    classes:
        Class labels in code order, used as keys.
    folds:
        With k-fold bagging, each row's fold: it is predicted by the member that did
        not train on it (out of fold), so the metrics are not measured on training data.

    Returns
    -------
    A JSON-safe dict, or ``None`` when there are no validation rows.
    """
    from service.ml.training import out_of_fold

    if len(y) == 0:
        return None
    network.eval()
    metrics = Metrics(classes)
    with torch.inference_mode():
        for i in range(0, len(y), 8192):
            if folds is None:
                logits = network(x[i : i + 8192]).double()
            else:
                logits = out_of_fold(network, x[i : i + 8192], folds[i : i + 8192]).double()
            metrics.add(torch.softmax(logits, dim=1).numpy(), y[i : i + 8192].numpy())
    return metrics.result()
