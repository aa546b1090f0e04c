"""Final metrics of a trained network on the validation split: plain JSON data."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from service.ml.preprocessing import label_key


def evaluate(network: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: tuple) -> dict | None:
    """Accuracy, macro-F1, log-loss, per-class precision/recall and the confusion matrix.

    Parameters
    ----------
    network:
        The trained network (put in eval mode here).
    x, y:
        Validation features and class codes.
    classes:
        Class labels in code order, used as keys.

    Returns
    -------
    A JSON-safe dict, or ``None`` when there are no validation rows.
    """
    if len(y) == 0:
        return None
    network.eval()
    with torch.inference_mode():
        logits = torch.cat([network(x[i : i + 8192]) for i in range(0, len(y), 8192)])
        log_loss = float(nn.functional.cross_entropy(logits.double(), y).item())
    predicted = logits.argmax(dim=1).numpy()
    truth = y.numpy()
    n = len(classes)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    true_positive = np.diag(confusion).astype(float)
    predicted_count = confusion.sum(axis=0)
    actual_count = confusion.sum(axis=1)
    precision = np.divide(
        true_positive, predicted_count, out=np.zeros(n), where=predicted_count > 0
    )
    recall = np.divide(true_positive, actual_count, out=np.zeros(n), where=actual_count > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0
    )
    present = actual_count > 0
    per_class: dict[str, Any] = {
        label_key(label): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(actual_count[i]),
        }
        for i, label in enumerate(classes)
    }
    return {
        "accuracy": float(true_positive.sum() / len(truth)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "log_loss": log_loss,
        "per_class": per_class,
        "confusion_matrix": {
            "labels": [label_key(label) for label in classes],
            "rows_are": "true class",
            "columns_are": "predicted class",
            "counts": confusion.tolist(),
        },
    }
