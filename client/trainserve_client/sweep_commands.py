"""`trainserve sweep`, `trainserve sweeps` and `trainserve alias`: hyperparameter sweeps
and model aliases on a running server, through ``trainserve_client.client``
(docs/sweeps.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import IO, Any

from trainserve_client.client import Client
from trainserve_client.commands import add_training_table_arguments, guarded
from trainserve_client.formatting import StatusLine, number, table, when

_DISTRIBUTIONS = ("uniform", "log_uniform", "int", "choice")


def add_sweep_commands(sub: argparse._SubParsersAction, server: argparse.ArgumentParser) -> None:
    """Register the sweep and alias commands; ``server`` carries --url and --api-key."""
    _add_sweep_command(sub, server)
    _add_sweeps_and_alias(sub, server)


def _add_sweep_command(sub: argparse._SubParsersAction, server: argparse.ArgumentParser) -> None:
    """sweep: upload a CSV and run a sweep."""
    sweep = sub.add_parser(
        "sweep",
        parents=[server],
        help="upload a CSV and run a hyperparameter sweep (one job per trial)",
        description="Grid: every combination of the --grid values. Random: --random N trials "
        "drawn from the --param distributions. Values: numbers, true/false, words; "
        "hidden_layers as 64 (one layer), 128x2 (two of 128) or 64-32.",
    )
    add_training_table_arguments(sweep)
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="a hyperparameter's values, e.g. learning_rate=1e-3,1e-2 (repeat for more)",
    )
    sweep.add_argument("--random", type=int, metavar="N", help="random search with N trials")
    sweep.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=KIND:ARGS",
        help="random search space: learning_rate=log_uniform:1e-4:1e-1, batch_size=int:16:128, "
        "dropout=uniform:0:0.5, hidden_layers=choice:64,128x2",
    )
    sweep.add_argument("--seed", type=int, help="seed of the random draws")
    sweep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a base hyperparameter of every trial, e.g. epochs=30",
    )
    sweep.add_argument("--metric", help="val_loss (default) or val_accuracy, ...")
    sweep.add_argument("--mode", choices=("min", "max"), help="default: by the metric")
    sweep.add_argument("--max-parallel", type=int, help="trials at once (default 2)")
    sweep.add_argument(
        "--early-stopping", choices=("median", "asha", "none"), help="rule (default median)"
    )
    sweep.add_argument("--grace-epochs", type=int, help="no trial is stopped before this epoch")
    sweep.add_argument("--promote-to", metavar="ALIAS", help="alias the winner when it ends")
    sweep.add_argument("--wait", action="store_true", help="follow the trials until it ends")
    sweep.set_defaults(run=guarded(cmd_sweep))


def _add_sweeps_and_alias(sub: argparse._SubParsersAction, server: argparse.ArgumentParser) -> None:
    """sweeps and alias."""
    sweeps = sub.add_parser("sweeps", parents=[server], help="list sweeps, or show one's trials")
    sweeps.add_argument("sweep", nargs="?", help="a sweep's id: its leaderboard")
    sweeps.set_defaults(run=guarded(cmd_sweeps))

    alias = sub.add_parser(
        "alias", parents=[server], help="point MODEL@ALIAS at a version, or delete the alias"
    )
    alias.add_argument("model", help="the model's name")
    alias.add_argument("alias", help="e.g. champion")
    alias.add_argument("version", type=int, nargs="?", help="the version it points to")
    alias.add_argument("--delete", action="store_true", help="delete the alias instead")
    alias.set_defaults(run=guarded(cmd_alias))


def parse_value(name: str, text: str) -> Any:
    """One command-line value: ``hidden_layers`` as ``64``, ``128x2`` or ``64-32``; else a
    JSON scalar (``1e-3``, ``true``, ``null``) or, failing that, the text itself."""
    if name == "hidden_layers":
        layers: list[int] = []
        for part in text.split("-"):
            width, _, times = part.partition("x")
            try:
                layers += [int(width)] * (int(times) if times else 1)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"hidden_layers: {text!r} is not like 64, 128x2 or 64-32"
                ) from None
        return layers
    try:
        return json.loads(text)
    except ValueError:
        return text


def _assignment(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"{flag} takes NAME=VALUE, got {text!r}")
    return name.strip(), value


def search_of(args: argparse.Namespace) -> dict:
    """The ``search`` of the request from --grid, or --random with --param."""
    if bool(args.grid) == bool(args.random):
        raise argparse.ArgumentTypeError("give --grid values, or --random N with --param")
    if args.grid:
        grid: dict[str, list] = {}
        for text in args.grid:
            name, values = _assignment(text, "--grid")
            grid[name] = [parse_value(name, v) for v in values.split(",")]
        return {"grid": grid}
    if not args.param:
        raise argparse.ArgumentTypeError("--random needs at least one --param")
    parameters = {}
    for text in args.param:
        name, spec = _assignment(text, "--param")
        kind, _, rest = spec.partition(":")
        if kind not in _DISTRIBUTIONS:
            raise argparse.ArgumentTypeError(
                f"--param {name}: {kind!r} is not one of {', '.join(_DISTRIBUTIONS)}"
            )
        if kind == "choice":
            parameters[name] = {kind: [parse_value(name, v) for v in rest.split(",")]}
        else:
            parameters[name] = {kind: [parse_value(name, v) for v in rest.split(":")]}
    random = {"n_trials": args.random, "parameters": parameters}
    if args.seed is not None:
        random["seed"] = args.seed
    return {"random": random}


def cmd_sweep(args: argparse.Namespace, client: Client) -> int:
    try:
        search = search_of(args)
        base = {}
        for text in args.set:
            name, value = _assignment(text, "--set")
            base[name] = parse_value(name, value)
    except argparse.ArgumentTypeError as exc:
        print(f"trainserve: {exc}", file=sys.stderr)
        return 2
    early = None
    if args.early_stopping or args.grace_epochs is not None:
        early = {"rule": args.early_stopping or "median"}
        if args.grace_epochs is not None:
            early["grace_epochs"] = args.grace_epochs
    sweep = client.sweep(
        args.data,
        target=args.target,
        model_name=args.model_name,
        search=search,
        hyperparameters=base,
        features=args.features.split(",") if args.features else None,
        metric=args.metric,
        mode=args.mode,
        max_parallel=args.max_parallel,
        early_stopping=early,
        promote_to=args.promote_to,
    )
    print(
        f"sweep {sweep['id']}: {sweep['n_trials']} trials of {sweep['model_name']}, "
        f"{sweep['mode']} {sweep['metric']}, {sweep['max_parallel']} at once",
        file=sys.stderr,
    )
    if not args.wait:
        print(sweep["id"])
        return 0
    view = SweepProgress(sys.stderr)
    started = time.monotonic()
    try:
        final = client.wait_sweep(sweep["id"], view.update)
    except KeyboardInterrupt:
        view.close()
        print(f"\nstopped watching; sweep {sweep['id']} goes on", file=sys.stderr)
        return 130
    view.close()
    leaderboard(final, sys.stdout)
    print(f"wall time {time.monotonic() - started:.1f} s", file=sys.stderr)
    return _outcome(final)


def _outcome(sweep: dict) -> int:
    winner = sweep.get("winner")
    if sweep["status"] != "succeeded" or not winner:
        reason = (sweep.get("error") or {}).get("message") or sweep["status"]
        print(f"trainserve: sweep {sweep['id']} {sweep['status']}: {reason}", file=sys.stderr)
        return 1
    model = winner["model"]
    line = f"winner: model {model['name']} version {model['version']}"
    if winner.get("promoted_to"):
        line += f" (now {model['name']}@{winner['promoted_to']})"
    print(line)
    return 0


class SweepProgress:
    """One status line per change: trials by state and the leader; redrawn on a terminal."""

    def __init__(self, stream: IO[str]):
        self.line = StatusLine(stream)
        self.last = ""
        self.finished: set[int] = set()

    def update(self, sweep: dict) -> None:
        for trial in sweep.get("leaderboard", []):
            if trial["status"] in ("succeeded", "failed", "cancelled") and (
                trial["trial"] not in self.finished
            ):
                self.finished.add(trial["trial"])
                self.line.show(_trial_line(trial, sweep["metric"]), keep=True)
        counts = sweep.get("counts") or {}
        parts = [f"{counts[s]} {s}" for s in ("running", "queued", "pending") if counts.get(s)]
        done = sum(counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
        parts.append(f"{done}/{sweep['n_trials']} done")
        if counts.get("stopped_early"):
            parts.append(f"{counts['stopped_early']} stopped early")
        best = sweep.get("best")
        if best and best.get("value") is not None:
            parts.append(f"best {sweep['metric']} {best['value']:.4f} (trial {best['trial']})")
        line = "trials: " + ", ".join(parts)
        if line != self.last:
            self.last = line
            self.line.show(line)

    def close(self) -> None:
        self.line.close()


def _trial_line(trial: dict, metric: str) -> str:
    how = trial["status"]
    if trial.get("stopped_early"):
        how = f"stopped early at epoch {trial.get('stopped_at_epoch')}"
    value = number(trial.get("value"), ".4f")
    return f"trial {trial['trial']} {how}: {metric} {value} {_params(trial['hyperparameters'])}"


def _params(values: dict) -> str:
    return " ".join(f"{k}={json.dumps(v, separators=(',', ''))}" for k, v in values.items())


def leaderboard(sweep: dict, out: IO[str]) -> None:
    """The trials, best first (the server's order)."""
    rows = [
        [
            str(t["trial"]),
            t["status"] + (" (stopped early)" if t.get("stopped_early") else ""),
            number(t.get("value"), ".4f"),
            "-" if t.get("best_epoch") is None else str(t["best_epoch"]),
            f"{t.get('epoch') or 0}/{t.get('epochs') or '-'}",
            "-" if t.get("model_version") is None else str(t["model_version"]),
            _params(t["hyperparameters"]),
        ]
        for t in sweep.get("leaderboard", [])
    ]
    metric = sweep["metric"].upper()
    table(
        ["TRIAL", "STATUS", metric, "BEST_EPOCH", "EPOCHS", "VERSION", "HYPERPARAMETERS"], rows, out
    )


def cmd_sweeps(args: argparse.Namespace, client: Client) -> int:
    if args.sweep:
        sweep = client.get_sweep(args.sweep)
        print(
            f"sweep {sweep['id']} {sweep['status']}: {sweep['model_name']}, "
            f"{sweep['mode']} {sweep['metric']}",
            file=sys.stderr,
        )
        leaderboard(sweep, sys.stdout)
        return 0
    rows = [
        [
            s["id"],
            s["status"],
            s["model_name"],
            f"{sum(v for k, v in (s.get('counts') or {}).items() if k in _DONE)}/{s['n_trials']}",
            number((s.get("best") or {}).get("value"), ".4f") + f" {s['metric']}",
            when(s["created_at"]),
        ]
        for s in client.sweeps()
    ]
    table(["ID", "STATUS", "MODEL", "DONE", "BEST", "CREATED (UTC)"], rows)
    return 0


_DONE = ("succeeded", "failed", "cancelled")


def cmd_alias(args: argparse.Namespace, client: Client) -> int:
    if args.delete:
        client.delete_alias(args.model, args.alias)
        print(f"{args.model}@{args.alias} deleted", file=sys.stderr)
        return 0
    if args.version is None:
        print("trainserve: give the VERSION the alias points to (or --delete)", file=sys.stderr)
        return 2
    answer = client.set_alias(args.model, args.alias, args.version)
    print(f"{answer['name']}@{answer['alias']} -> version {answer['version']}")
    return 0
