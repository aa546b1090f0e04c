"""The client commands of ``trainserve``: train, predict, jobs, models, metrics (sweep,
sweeps and alias are in ``sweep_commands``). They use ``trainserve_client.client`` only
(no Flask, no torch), so they start fast."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainserve_client.client import Client, ClientError, compression
from trainserve_client.formatting import BytesBar, ProgressBar, number, table, when
from trainserve_client.hyperparameters import HYPERPARAMETERS, Hyperparameter, Kind

# What each kind of flag takes, for the usage error of a value that is not one.
_EXPECTED = {
    Kind.INT: "an integer",
    Kind.FLOAT: "a number",
    Kind.CHOICE: "a word",
    Kind.INT_LIST: "integers separated by commas (e.g. 128,64)",
    Kind.CLASS_WEIGHT: "'balanced' or a JSON object",
    Kind.INT_OR_AUTO: "an integer or 'auto'",
}


def _parse(h: Hyperparameter) -> Callable[[str], Any]:
    """How the text of ``h``'s flag becomes the value sent; the server validates it and
    names the one at fault. Text that is not of the flag's kind is argparse's usage error
    saying what the flag takes (not "invalid <lambda> value")."""
    parse: Callable[[str], Any] = {
        Kind.INT: int,
        Kind.FLOAT: float,
        Kind.CHOICE: str,
        Kind.INT_LIST: lambda s: [int(x) for x in s.split(",") if x],
        Kind.CLASS_WEIGHT: lambda s: s if s == "balanced" else json.loads(s),
        Kind.INT_OR_AUTO: lambda s: s if s == "auto" else int(s),
    }[h.kind]
    nullable = h.nullable or h.recipe
    expected = _EXPECTED[h.kind] + (", or none" if nullable else "")

    def read(text: str) -> Any:
        if nullable and text == "none":
            return None
        try:
            return parse(text)
        except ValueError:  # json.JSONDecodeError is one
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}") from None

    return read


def _help(h: Hyperparameter) -> str:
    text = h.help.replace("null", "none")  # the flags spell JSON's null as none
    if h.kind is Kind.CHOICE:
        text += f": {', '.join(h.choices)}"
    elif h.kind is Kind.INT_LIST:
        text += ", e.g. 128,64"
    elif h.kind is Kind.CLASS_WEIGHT:
        text += " as JSON"
    if h.recipe:
        return f"{text} (default: the recipe's)".replace("%", "%%")
    default = ",".join(map(str, h.default)) if h.kind is Kind.INT_LIST else h.default
    return f"{text} (default {'none' if default is None else default})".replace("%", "%%")


def add_hyperparameter_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per row of the hyperparameter table. Only the flags given reach the
    server, which applies its defaults to the rest."""
    group = parser.add_argument_group("hyperparameters (default: the server's)")
    for h in HYPERPARAMETERS:
        if h.kind is Kind.BOOL and h.recipe:  # three states: on, off, or the recipe's
            group.add_argument(
                h.flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=h.help.replace("null", "neither"),
            )
        elif h.kind is Kind.BOOL:
            group.add_argument(h.flag, action="store_true", default=argparse.SUPPRESS, help=h.help)
        else:
            group.add_argument(h.flag, type=_parse(h), help=_help(h), default=argparse.SUPPRESS)


def add_job_commands(sub: argparse._SubParsersAction, server: argparse.ArgumentParser) -> None:
    """Register train, upload, predict, evaluate, jobs, models and metrics; ``server``
    carries --url and --api-key."""
    for add_commands in (_add_upload_commands, _add_model_commands, _add_listing_commands):
        add_commands(sub, server)


def add_training_table_arguments(parser: argparse.ArgumentParser) -> None:
    """The CSV to train on and its columns (train and sweep)."""
    parser.add_argument("data", type=Path, help="a CSV file with a header row")
    parser.add_argument("--target", required=True, help="the column to predict")
    parser.add_argument("--features", help="comma-separated feature columns (default: all others)")
    parser.add_argument("--model-name", help="default: the file's name without extension")


def _add_upload_commands(sub: argparse._SubParsersAction, server: argparse.ArgumentParser) -> None:
    """train and upload."""
    train = sub.add_parser(
        "train", parents=[server], help="upload a CSV and train a model on a running server"
    )
    add_training_table_arguments(train)
    train.add_argument(
        "--column-types", type=json.loads, help='JSON, e.g. {"grade": "categorical"}'
    )
    add_hyperparameter_flags(train)
    train.add_argument(
        "--wait", action="store_true", help="follow the job with a progress bar until it ends"
    )
    train.set_defaults(run=guarded(cmd_train))

    upload = sub.add_parser(
        "upload",
        parents=[server],
        help="stream a table (CSV, .gz/.zst, Parquet, JSON Lines) to a running server",
    )
    upload.add_argument("data", type=Path, help="the file to upload")
    upload.add_argument("--name", help="the dataset's name (default: the file's stem)")
    upload.add_argument("--column-types", type=json.loads, help='JSON, e.g. {"zip": "categorical"}')
    upload.set_defaults(run=guarded(cmd_upload))


def _add_model_commands(sub: argparse._SubParsersAction, server: argparse.ArgumentParser) -> None:
    """predict and evaluate."""
    predict = sub.add_parser(
        "predict", parents=[server], help="predict every row of a CSV; writes label,p_<class>..."
    )
    predict.add_argument("model", help="the model's name")
    predict.add_argument(
        "data", type=Path, help="a CSV file with a header row (may be .gz or .zst)"
    )
    predict.add_argument("-o", "--output", type=Path, help="the CSV to write (default: stdout)")
    predict.add_argument("--version", type=int, help="a model version (default: the latest)")
    predict.set_defaults(run=guarded(cmd_predict))

    evaluate = sub.add_parser(
        "evaluate",
        parents=[server],
        help="a model's accuracy, log-loss, calibration and confusion matrix on a labelled CSV",
    )
    evaluate.add_argument("model", help="the model's name")
    evaluate.add_argument(
        "data", type=Path, help="a CSV file with a header row and the labels (may be .gz or .zst)"
    )
    evaluate.add_argument("--version", type=int, help="a model version (default: the latest)")
    evaluate.add_argument("--target", help="the column of labels (default: the model's target)")
    evaluate.add_argument("--json", action="store_true", help="print the server's JSON answer")
    evaluate.set_defaults(run=guarded(cmd_evaluate))


def _add_listing_commands(sub: argparse._SubParsersAction, server: argparse.ArgumentParser) -> None:
    """jobs, models and metrics."""
    jobs = sub.add_parser("jobs", parents=[server], help="list training jobs, newest first")
    jobs.add_argument("--status", help="queued, running, succeeded, failed or cancelled")
    jobs.add_argument("--model-name", help="only this model's jobs")
    jobs.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    jobs.set_defaults(run=guarded(cmd_jobs))

    models = sub.add_parser("models", parents=[server], help="list models and their latest version")
    models.set_defaults(run=guarded(cmd_models))

    metrics = sub.add_parser("metrics", parents=[server], help="a job's metrics, one row per epoch")
    metrics.add_argument("job", help="the job's id")
    metrics.set_defaults(run=guarded(cmd_metrics))


def guarded(command: Callable[[argparse.Namespace, Client], int]) -> Callable:
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


def cmd_upload(args: argparse.Namespace, client: Client) -> int:
    bar = BytesBar(sys.stderr, f"uploading {args.data.name}")
    try:
        dataset = client.upload(args.data, args.name, column_types=args.column_types, progress=bar)
    finally:
        bar.close()
    print(dataset["id"])
    print(
        f"dataset {dataset['name']}: {dataset['n_rows']:,} rows, {dataset['n_columns']} columns",
        file=sys.stderr,
    )
    return 0


def cmd_train(args: argparse.Namespace, client: Client) -> int:
    given = [h.name for h in HYPERPARAMETERS if hasattr(args, h.name)]
    hyperparameters = {name: getattr(args, name) for name in given}
    bar = BytesBar(sys.stderr, f"uploading {args.data.name}")
    try:
        job = client.train(
            args.data,
            target=args.target,
            model_name=args.model_name,
            features=args.features.split(",") if args.features else None,
            column_types=args.column_types,
            hyperparameters=hyperparameters,
            progress=bar,
        )
    finally:
        bar.close()
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


def cmd_predict(args: argparse.Namespace, client: Client) -> int:
    version = client.model(args.model, args.version)
    if args.version is None:
        version = version["versions"][0]
    header = _header(args.data)
    if version["target"] in header:
        # Sent as it is: the server sets the target aside (X-Ignored-Columns), faster
        # than rewriting every line here.
        print(f"leaving out {version['target']!r}, the model's target column", file=sys.stderr)
    destination = args.output or sys.stdout
    bar = BytesBar(sys.stderr, f"predicting {args.data.name}")
    try:
        rows = client.predict_csv(
            args.model,
            args.data,
            destination,
            version=version["version"],
            progress=bar,
        )
    finally:
        bar.close()
    where = args.output or "stdout"
    print(
        f"{rows} predictions of {args.model} version {version['version']} written to {where}",
        file=sys.stderr,
    )
    return 0


def cmd_evaluate(args: argparse.Namespace, client: Client) -> int:
    answer = client.evaluate_csv(args.model, args.data, version=args.version, target=args.target)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    model = answer["model"]
    print(f"{model['name']} version {model['version']} on {args.data}: {answer['rows']} rows")
    if answer["skipped_rows"]:
        print(f"({answer['skipped_rows']} row(s) without a {answer['target']!r} label left out)")
    print(
        f"accuracy {answer['accuracy']:.4f}  macro-F1 {answer['macro_f1']:.4f}  "
        f"log-loss {answer['log_loss']:.4f}  ECE {answer['ece']:.4f}"
    )
    print()
    rows = [
        [label, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"])]
        for label, c in answer["per_class"].items()
    ]
    table(["CLASS", "PRECISION", "RECALL", "F1", "SUPPORT"], rows, sys.stdout)
    matrix = answer["confusion_matrix"]
    print()
    print("confusion matrix (rows: true class, columns: predicted class)")
    labels, counts = matrix["labels"], matrix["counts"]
    rows = [[label, *map(str, row)] for label, row in zip(labels, counts, strict=True)]
    table(["", *labels], rows, sys.stdout)
    return 0


def cmd_jobs(args: argparse.Namespace, client: Client) -> int:
    rows = [
        [
            job["id"],
            job["status"],
            job["model_name"] + (f" v{job['model']['version']}" if job.get("model") else ""),
            f"{job['epoch']}/{job['epochs']}",
            number((job.get("latest") or {}).get("val_accuracy"), ".3f"),
            when(job["created_at"]),
        ]
        for job in client.jobs(status=args.status, model_name=args.model_name, limit=args.limit)
    ]
    table(["ID", "STATUS", "MODEL", "EPOCH", "VAL_ACC", "CREATED (UTC)"], rows)
    return 0


def cmd_models(args: argparse.Namespace, client: Client) -> int:
    rows = [
        [m["name"], str(m["latest_version"]), str(m["n_versions"]), when(m["updated_at"])]
        for m in client.models()
    ]
    table(["NAME", "LATEST", "VERSIONS", "UPDATED (UTC)"], rows)
    return 0


def cmd_metrics(args: argparse.Namespace, client: Client) -> int:
    rows = [
        [
            str(e["epoch"]),
            number(e["train_loss"], ".4f"),
            number(e.get("train_accuracy"), ".3f"),
            number(e.get("val_loss"), ".4f"),
            number(e.get("val_accuracy"), ".3f"),
            number(e["learning_rate"], ".3g"),
            number(e["duration_s"], ".3f"),
        ]
        for e in client.metrics(args.job)
    ]
    table(["EPOCH", "TRAIN_LOSS", "TRAIN_ACC", "VAL_LOSS", "VAL_ACC", "LR", "SECONDS"], rows)
    return 0


def _header(path: Path) -> list[str]:
    """The CSV file's column names; none for a zstd file (Python has no zstd reader
    before 3.14: the server still sets the model's target aside)."""
    import csv
    import gzip
    import zlib

    kind = compression(path)
    if kind == "zstd":
        return []
    try:
        if kind == "gzip":
            with gzip.open(path, "rt", newline="", encoding="utf-8-sig") as f:
                return next(csv.reader(f), [])
        with open(path, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), [])
    except UnicodeDecodeError as exc:
        raise ClientError(f"{path} is not UTF-8 text: {exc.reason} in its header") from None
    except (OSError, EOFError, zlib.error) as exc:  # gzip's: a corrupt or cut file
        raise ClientError(f"{path} cannot be decompressed: {exc}") from None
