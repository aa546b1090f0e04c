"""The `trainserve` commands that talk to a running server: train, predict, jobs, models,
metrics (and, from service.cli_sweeps, sweep, sweeps, alias). They use ``service.client``
only (no Flask, no torch), so they start fast."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from service.client import Client, ClientError
from service.ml.hyperparameters import HYPERPARAMETERS, Hyperparameter, Kind


def _parse(h: Hyperparameter) -> Callable[[str], Any]:
    """How the text of ``h``'s flag becomes the value sent; the server validates it and
    names the one at fault."""
    parse: Callable[[str], Any] = {
        Kind.INT: int,
        Kind.FLOAT: float,
        Kind.CHOICE: str,
        Kind.INT_LIST: lambda s: [int(x) for x in s.split(",") if x],
        Kind.CLASS_WEIGHT: lambda s: s if s == "balanced" else json.loads(s),
    }[h.kind]
    if not h.nullable:
        return parse
    return lambda s: None if s == "none" else parse(s)


def _help(h: Hyperparameter) -> str:
    text = h.help.replace("null", "none")  # the flags spell JSON's null as none
    if h.kind is Kind.CHOICE:
        text += f": {', '.join(h.choices)}"
    elif h.kind is Kind.INT_LIST:
        text += ", e.g. 128,64"
    elif h.kind is Kind.CLASS_WEIGHT:
        text += " as JSON"
    default = ",".join(map(str, h.default)) if h.kind is Kind.INT_LIST else h.default
    return f"{text} (default {'none' if default is None else default})".replace("%", "%%")


def add_hyperparameter_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per row of the hyperparameter table. Only the flags given reach the
    server, which applies its defaults to the rest."""
    group = parser.add_argument_group("hyperparameters (default: the server's)")
    for h in HYPERPARAMETERS:
        if h.kind is Kind.BOOL:
            group.add_argument(h.flag, action="store_true", default=argparse.SUPPRESS, help=h.help)
        else:
            group.add_argument(h.flag, type=_parse(h), help=_help(h), default=argparse.SUPPRESS)


def add_client_commands(sub: argparse._SubParsersAction) -> None:
    """Register the client commands on the `trainserve` parser's subcommands."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", help="the server (default TRAINSERVE_URL, http://127.0.0.1:8000)")
    server.add_argument("--api-key", help="API key (default TRAINSERVE_API_KEY)")

    train = sub.add_parser(
        "train", parents=[server], help="upload a CSV and train a model on a running server"
    )
    train.add_argument("data", type=Path, help="a CSV file with a header row")
    train.add_argument("--target", required=True, help="the column to predict")
    train.add_argument("--features", help="comma-separated feature columns (default: all others)")
    train.add_argument("--model-name", help="default: the file's name without extension")
    train.add_argument(
        "--column-types", type=json.loads, help='JSON, e.g. {"grade": "categorical"}'
    )
    add_hyperparameter_flags(train)
    train.add_argument(
        "--wait", action="store_true", help="follow the job with a progress bar until it ends"
    )
    train.set_defaults(run=_guarded(cmd_train))

    predict = sub.add_parser(
        "predict", parents=[server], help="predict every row of a CSV; writes label,p_<class>..."
    )
    predict.add_argument("model", help="the model's name")
    predict.add_argument("data", type=Path, help="a CSV file with a header row")
    predict.add_argument("-o", "--output", type=Path, help="the CSV to write (default: stdout)")
    predict.add_argument("--version", type=int, help="a model version (default: the latest)")
    predict.set_defaults(run=_guarded(cmd_predict))

    jobs = sub.add_parser("jobs", parents=[server], help="list training jobs, newest first")
    jobs.add_argument("--status", help="queued, running, succeeded, failed or cancelled")
    jobs.add_argument("--model-name", help="only this model's jobs")
    jobs.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    jobs.set_defaults(run=_guarded(cmd_jobs))

    models = sub.add_parser("models", parents=[server], help="list models and their latest version")
    models.set_defaults(run=_guarded(cmd_models))

    metrics = sub.add_parser("metrics", parents=[server], help="a job's metrics, one row per epoch")
    metrics.add_argument("job", help="the job's id")
    metrics.set_defaults(run=_guarded(cmd_metrics))

    from service.cli_sweeps import add_sweep_commands

    add_sweep_commands(sub, server)


def _guarded(command: Callable[[argparse.Namespace, Client], int]) -> Callable:
    """Run ``command`` with a client; a server or connection error is one line and exit 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args, Client(args.url, args.api_key))
        except ClientError as exc:
            print(f"trainserve: {exc}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            # The reader went away (`| head`): say nothing more, as other commands do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except OSError as exc:  # the local file
            where = f": {exc.filename}" if exc.filename else ""
            print(f"trainserve: {exc.strerror or exc}{where}", file=sys.stderr)
            return 1

    return run


def cmd_train(args: argparse.Namespace, client: Client) -> int:
    given = [h.name for h in HYPERPARAMETERS if hasattr(args, h.name)]
    hyperparameters = {name: getattr(args, name) for name in given}
    job = client.train(
        args.data,
        target=args.target,
        model_name=args.model_name,
        features=args.features.split(",") if args.features else None,
        column_types=args.column_types,
        hyperparameters=hyperparameters,
    )
    if not args.wait:
        print(job["id"])
        print(
            f"job {job['id']} queued; watch it with `curl -N {client.url}/v1/jobs/{job['id']}"
            "/events`",
            file=sys.stderr,
        )
        return 0
    bar = ProgressBar(sys.stderr, job["epochs"])
    print(f"job {job['id']}: {job['model_name']}, up to {job['epochs']} epochs", file=sys.stderr)
    try:
        final = client.wait(job["id"], on_epoch=bar.epoch, on_status=bar.status)
    except KeyboardInterrupt:
        bar.close()
        print(f"\nstopped watching; job {job['id']} goes on training", file=sys.stderr)
        return 130
    bar.close()
    return _report(final, client)


def _report(job: dict, client: Client) -> int:
    if job["status"] != "succeeded":
        reason = (job.get("error") or {}).get("message") or job["status"]
        print(f"trainserve: job {job['id']} {job['status']}: {reason}", file=sys.stderr)
        return 1
    name, version = job["model"]["name"], job["model"]["version"]
    metrics = client.model(name, version)["metrics"]
    kept = [f"val_loss {metrics['val_loss']:.4f}"] if metrics.get("val_loss") is not None else []
    if metrics.get("val_accuracy") is not None:
        kept.append(f"val_accuracy {metrics['val_accuracy']:.3f}")
    print(
        f"succeeded after {job['epoch']} epochs; the model keeps epoch "
        f"{metrics.get('best_epoch', job['epoch'])}: {', '.join(kept)}",
        file=sys.stderr,
    )
    print(f"model {name} version {version}")
    return 0


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
        parts.append(f"ETA {_clock(self._eta(epoch, now))}")
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


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def cmd_predict(args: argparse.Namespace, client: Client) -> int:
    version = client.model(args.model, args.version)
    if args.version is None:
        version = version["versions"][0]
    header = _header(args.data)
    drop = [version["target"]] if version["target"] in header else []
    if drop:
        print(f"leaving out {drop[0]!r}, the model's target column", file=sys.stderr)
    destination = args.output or sys.stdout
    rows = client.predict_csv(
        args.model, args.data, destination, version=version["version"], drop_columns=drop
    )
    where = args.output or "stdout"
    print(
        f"{rows} predictions of {args.model} version {version['version']} written to {where}",
        file=sys.stderr,
    )
    return 0


def _header(path: Path) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def cmd_jobs(args: argparse.Namespace, client: Client) -> int:
    rows = [
        [
            job["id"],
            job["status"],
            job["model_name"] + (f" v{job['model']['version']}" if job.get("model") else ""),
            f"{job['epoch']}/{job['epochs']}",
            _number((job.get("latest") or {}).get("val_accuracy"), ".3f"),
            _when(job["created_at"]),
        ]
        for job in client.jobs(status=args.status, model_name=args.model_name, limit=args.limit)
    ]
    _table(["ID", "STATUS", "MODEL", "EPOCH", "VAL_ACC", "CREATED (UTC)"], rows)
    return 0


def cmd_models(args: argparse.Namespace, client: Client) -> int:
    rows = [
        [m["name"], str(m["latest_version"]), str(m["n_versions"]), _when(m["updated_at"])]
        for m in client.models()
    ]
    _table(["NAME", "LATEST", "VERSIONS", "UPDATED (UTC)"], rows)
    return 0


def cmd_metrics(args: argparse.Namespace, client: Client) -> int:
    rows = [
        [
            str(e["epoch"]),
            _number(e["train_loss"], ".4f"),
            _number(e.get("train_accuracy"), ".3f"),
            _number(e.get("val_loss"), ".4f"),
            _number(e.get("val_accuracy"), ".3f"),
            _number(e["learning_rate"], ".3g"),
            _number(e["duration_s"], ".3f"),
        ]
        for e in client.metrics(args.job)
    ]
    _table(["EPOCH", "TRAIN_LOSS", "TRAIN_ACC", "VAL_LOSS", "VAL_ACC", "LR", "SECONDS"], rows)
    return 0


def _when(timestamp: str) -> str:
    """``2026-11-27T03:02:19.123+00:00`` → ``2026-11-27 03:02:19``."""
    return timestamp[:19].replace("T", " ")


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(
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
