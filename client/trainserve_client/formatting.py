"""How the client commands print: tables, times, numbers and the progress bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import IO


class ProgressBar:
    """Epoch, loss, validation accuracy and ETA on one line redrawn with ``\\r`` on a
    terminal; one line per epoch otherwise (a log file, a pipe)."""

    WIDTH = 24
    PACE_AFTER_S = 3.0

    def __init__(self, stream: IO[str], total: int, clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.total = max(1, total)
        self.clock = clock
        self.live = stream.isatty()
        self.first: tuple[float, int] | None = None  # (when, epoch) of the first epoch seen
        self.durations: list[float] = []
        self.drawn = False

    def status(self, job: dict) -> None:
        self.total = max(1, job.get("epochs") or self.total)
        if job["status"] == "queued":
            self._line(f"queued, waiting for a worker (attempt {job.get('attempt', 0) + 1})")
        elif job["status"] == "running" and not job.get("epoch"):
            self._line(f"running (attempt {job.get('attempt', 1)})")

    def epoch(self, metrics: dict) -> None:
        epoch, now = metrics["epoch"], self.clock()
        if self.first is None:
            self.first = (now, epoch)
        self.durations.append(metrics.get("duration_s") or 0.0)
        filled = round(self.WIDTH * min(epoch, self.total) / self.total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        parts = [f"epoch {epoch:>{len(str(self.total))}}/{self.total} [{bar}]"]
        parts.append(f"loss {metrics['train_loss']:.4f}")
        if metrics.get("val_loss") is not None:
            parts.append(f"val_loss {metrics['val_loss']:.4f}")
        if metrics.get("val_accuracy") is not None:
            parts.append(f"val_acc {metrics['val_accuracy']:.3f}")
        parts.append(f"ETA {clock(self._eta(epoch, now))}")
        self._line("  ".join(parts))

    def _eta(self, epoch: int, now: float) -> float:
        left = max(0, self.total - epoch)
        assert self.first is not None
        since, first_epoch = self.first
        if epoch > first_epoch and now - since >= self.PACE_AFTER_S:
            # Epochs watched live give the real pace, database writes included; the
            # stream delivers them in bursts, so only after a few seconds.
            return left * (now - since) / (epoch - first_epoch)
        recent = self.durations[-10:]
        return left * sum(recent) / len(recent)

    def _line(self, text: str) -> None:
        if self.live:
            self.stream.write("\r" + text.ljust(getattr(self, "_width", 0)))
            self._width = len(text)
            self.drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def when(timestamp: str) -> str:
    """``2026-11-27T03:02:19.123+00:00`` → ``2026-11-27 03:02:19``."""
    return timestamp[:19].replace("T", " ")


def number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], out: IO[str] | None = None
) -> None:
    """Columns padded to their widest cell; numbers right-aligned."""
    out = out or sys.stdout
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        cells = []
        for cell, width in zip(row, widths, strict=True):
            numeric = cell.replace(".", "", 1).replace("/", "", 1).lstrip("-").isdigit()
            cells.append(cell.rjust(width) if numeric and row is not header else cell.ljust(width))
        out.write("  ".join(cells).rstrip() + "\n")
