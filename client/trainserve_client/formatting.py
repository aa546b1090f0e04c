"""How the client commands print: tables, times, numbers and the progress bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import IO


class StatusLine:
    """A line redrawn in place with ``\\r`` on a terminal; elsewhere (a log file, a pipe)
    each text on a line of its own."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.live = stream.isatty()
        self.width = 0  # of the text drawn on the open line (0: no open line)

    def show(self, text: str, *, keep: bool = False) -> None:
        """Draw ``text`` over the open line; ``keep`` ends it, so the next text goes below."""
        if self.live:
            self.stream.write("\r" + text.ljust(self.width) + ("\n" if keep else ""))
            self.width = 0 if keep else len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the open line, if any."""
        if self.live and self.width:
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0


class ProgressBar:
    """Epoch, loss, validation accuracy and ETA on one line redrawn with ``\\r`` on a
    terminal; one line per epoch otherwise (a log file, a pipe)."""

    WIDTH = 24
    PACE_AFTER_S = 3.0

    def __init__(self, stream: IO[str], total: int, clock: Callable[[], float] = time.monotonic):
        self.line = StatusLine(stream)
        self.total = max(1, total)
        self.clock = clock
        self.first: tuple[float, int] | None = None  # (when, epoch) of the first epoch seen
        self.durations: list[float] = []

    def status(self, job: dict) -> None:
        self.total = max(1, job.get("epochs") or self.total)
        if job["status"] == "queued":
            self.line.show(f"queued, waiting for a worker (attempt {job.get('attempt', 0) + 1})")
        elif job["status"] == "running" and not job.get("epoch"):
            self.line.show(f"running (attempt {job.get('attempt', 1)})")

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
        self.line.show("  ".join(parts))

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

    def close(self) -> None:
        self.line.close()


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def when(timestamp: str) -> str:
    """``2026-11-27T03:02:19.123+00:00`` → ``2026-11-27 03:02:19``."""
    return timestamp[:19].replace("T", " ")


def number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], out: IO[str] | None = None) -> None:
    """Columns padded to their widest cell; numbers right-aligned."""
    out = out or sys.stdout
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        cells = []
        for cell, width in zip(row, widths, strict=True):
            numeric = cell.replace(".", "", 1).replace("/", "", 1).lstrip("-").isdigit()
            cells.append(cell.rjust(width) if numeric and row is not header else cell.ljust(width))
        out.write("  ".join(cells).rstrip() + "\n")


class BytesBar:
    """Bytes sent of a file: MB, MB/s and ETA on one line redrawn with ``\\r``, at most ten
    times a second; nothing when ``stream`` is not a terminal (a log, a pipe)."""

    WIDTH = 24

    def __init__(self, stream: IO[str], label: str, clock: Callable[[], float] = time.monotonic):
        self.stream, self.label, self.clock = stream, label, clock
        self.live = stream.isatty()
        self.started = clock()
        self.drawn_at = -1.0
        self.drawn = False

    def __call__(self, sent: int, total: int) -> None:
        now = self.clock()
        if not self.live or (now - self.drawn_at < 0.1 and sent < total):
            return
        self.drawn_at = now
        elapsed = max(now - self.started, 1e-9)
        rate = sent / elapsed
        filled = round(self.WIDTH * sent / total) if total else self.WIDTH
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        eta = (total - sent) / rate if rate > 0 else 0.0
        line = (
            f"{self.label} [{bar}] {sent / 1e6:,.1f}/{total / 1e6:,.1f} MB "
            f"{rate / 1e6:,.1f} MB/s ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        )
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
