"""Loss and accuracy curves of a training run as an SVG or PNG image (matplotlib).

Each call builds its own ``matplotlib.figure.Figure`` and never touches pyplot, whose
global state is not safe across the API's threads; saving picks the Agg (PNG) or SVG
renderer by format, so no backend is ever selected globally.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

FORMATS = {"svg": "image/svg+xml", "png": "image/png"}

_TRAIN, _VALIDATION = "#1f77b4", "#ff7f0e"


@dataclass(frozen=True)
class Curves:
    """Per-epoch values, aligned with ``epochs``; a missing value is ``None``."""

    epochs: Sequence[int]
    train_loss: Sequence[float | None]
    val_loss: Sequence[float | None]
    train_accuracy: Sequence[float | None]
    val_accuracy: Sequence[float | None]


def render(curves: Curves, title: str, image_format: str, total_epochs: int | None = None) -> bytes:
    """Two panels, loss and accuracy, train and validation per epoch, as image bytes.

    Parameters
    ----------
    curves:
        The values to draw; with no epoch the image says that none has finished yet.
    title:
        The figure's title (the model and job).
    image_format:
        ``"svg"`` or ``"png"``.
    total_epochs:
        The planned number of epochs, shown in the subtitle.

    Returns
    -------
    The image file's bytes.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2), dpi=100, layout="constrained")
    done = len(curves.epochs)
    planned = f" of {total_epochs}" if total_epochs else ""
    figure.suptitle(f"{title}\n{done} epoch{'s' if done != 1 else ''}{planned}", fontsize=12)
    loss, accuracy = figure.subplots(1, 2)
    _panel(loss, curves.epochs, curves.train_loss, curves.val_loss, "loss (cross-entropy)")
    _panel(accuracy, curves.epochs, curves.train_accuracy, curves.val_accuracy, "accuracy")
    accuracy.set_ylim(-0.02, 1.02)
    best = _best_epoch(curves)
    if best is not None:
        for axes in (loss, accuracy):
            axes.axvline(
                best, color="0.4", linestyle=":", linewidth=1.2,
                label=f"lowest validation loss (epoch {best})",
            )  # fmt: skip
            axes.legend(loc="best")
    if not done:
        for axes in (loss, accuracy):
            axes.text(
                0.5, 0.5, "no finished epoch yet", ha="center", va="center",
                transform=axes.transAxes, fontsize=13, color="0.35",
            )  # fmt: skip
    out = io.BytesIO()
    # No date in the metadata: the same curves give the same bytes.
    metadata = {"Date": None} if image_format == "svg" else {}
    figure.savefig(out, format=image_format, metadata=metadata)
    return out.getvalue()


def _best_epoch(curves: Curves) -> int | None:
    """The epoch of the lowest validation loss (the weights early stopping keeps)."""
    points = [(v, e) for e, v in zip(curves.epochs, curves.val_loss, strict=True) if v is not None]
    return min(points)[1] if len(points) > 1 else None


def _panel(axes, epochs, train, validation, name: str) -> None:
    marker = "o" if len(epochs) <= 30 else None
    lines = ((train, "train", _TRAIN), (validation, "validation", _VALIDATION))
    for values, label, colour in lines:
        points = [(e, v) for e, v in zip(epochs, values, strict=True) if v is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, label=label, color=colour, marker=marker, markersize=3, linewidth=1.8)
    axes.set_title(name)
    axes.set_xlabel("epoch")
    axes.grid(True, alpha=0.3)
    axes.xaxis.get_major_locator().set_params(integer=True)
    if axes.has_data():
        axes.legend(loc="best")
    if len(epochs) == 1:
        axes.set_xlim(epochs[0] - 1, epochs[0] + 1)
