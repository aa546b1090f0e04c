"""The ``trainserve`` command: run the service whole (``up``) or its parts separately."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from service.config import PREFIX, AuthMode, Settings, default_home, sqlite_urls

log = logging.getLogger("trainserve")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    from service.usecases.errors import UseCaseError

    try:
        return args.run(args) or 0
    except UseCaseError as exc:
        print(f"trainserve: {exc.message}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainserve",
        description="Train PyTorch classifiers on tabular data and serve their probabilities.",
    )
    sub = parser.add_subparsers(metavar="COMMAND")
    for add_commands in (
        _add_up_command,
        _add_api_command,
        _add_worker_command,
        _add_upkeep_command,
        _add_db_commands,
        _add_keys_commands,
    ):
        add_commands(sub)

    from trainserve_client.cli import add_client_commands

    add_client_commands(sub)
    return parser


def _add_up_command(sub: argparse._SubParsersAction) -> None:
    """trainserve up: every process on embedded defaults."""
    up = sub.add_parser("up", help="run API + worker + upkeep loop on embedded defaults")
    up.add_argument(
        "--home", type=Path, default=None, help=f"where the files live (default {default_home()})"
    )
    up.add_argument("--host", default="127.0.0.1", help="address of the API (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=8000, help="port of the API (default 8000)")
    up.add_argument("--workers", type=int, default=2, help="API processes (default 2)")
    up.set_defaults(run=cmd_up)


def _add_api_command(sub: argparse._SubParsersAction) -> None:
    """trainserve api: the API under gunicorn."""
    api = sub.add_parser("api", help="run the API under gunicorn")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument(
        "--workers",
        type=int,
        default=None,
        help="gunicorn worker processes (default: the number of cores, at least 2)",
    )
    api.add_argument(
        "--threads",
        type=int,
        default=8,
        help="threads per worker process for long requests (event streams, uploads and "
        "other bodies over 1 MiB), served beside the predictions (default 8)",
    )
    api.add_argument(
        "--worker-class",
        choices=("hybrid", "sync"),
        default="hybrid",
        help="hybrid (default): each process serves requests one at a time in its main "
        "thread, as sync workers do, and long requests in --threads threads beside them; "
        "sync: gunicorn's sync worker, where a stream or upload holds a whole process "
        "(docs/architecture.md)",
    )
    api.set_defaults(run=cmd_api)


def _add_worker_command(sub: argparse._SubParsersAction) -> None:
    """trainserve worker: a Celery worker for training jobs."""
    worker = sub.add_parser("worker", help="run a Celery worker for training jobs")
    worker.add_argument(
        "--concurrency", type=int, default=1, help="jobs trained at once (default 1)"
    )
    worker.add_argument(
        "--queues",
        default=None,
        help="comma-separated queues (default TRAINSERVE_QUEUE, 'training')",
    )
    worker.add_argument(
        "--events",
        action="store_true",
        help="send task events and heartbeats, for Flower (docker-compose.yml does)",
    )
    # `trainserve up` starts a standby worker this way: ready to consume once it reads a
    # byte from this file descriptor (the supervisor writes one when the worker dies).
    worker.add_argument("--standby-fd", type=int, default=None, help=argparse.SUPPRESS)
    worker.set_defaults(run=cmd_worker)


def _add_upkeep_command(sub: argparse._SubParsersAction) -> None:
    """trainserve upkeep (alias sweeper): the upkeep loop."""
    upkeep = sub.add_parser(
        "upkeep",
        aliases=["sweeper"],
        help="run the upkeep loop: republish lost jobs, requeue dead workers' jobs",
    )
    upkeep.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between passes (default TRAINSERVE_SWEEP_INTERVAL_SECONDS)",
    )
    upkeep.set_defaults(run=cmd_upkeep)


def _add_db_commands(sub: argparse._SubParsersAction) -> None:
    """trainserve db upgrade|wait."""
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(metavar="ACTION")
    upgrade = db_sub.add_parser("upgrade", help="migrate the schema to the latest revision")
    _home_option(upgrade)
    upgrade.set_defaults(run=cmd_db_upgrade)
    wait = db_sub.add_parser(
        "wait",
        help="wait until the schema is at the latest revision (a deployment's init step, "
        "while a migration job runs)",
    )
    wait.add_argument(
        "--timeout", type=float, default=300.0, help="give up after S seconds (default 300)"
    )
    _home_option(wait)
    wait.set_defaults(run=cmd_db_wait)


def _add_keys_commands(sub: argparse._SubParsersAction) -> None:
    """trainserve keys create|revoke|list."""
    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(metavar="ACTION")
    create = keys_sub.add_parser(
        "create", help="create a key; the key alone is printed on the last line"
    )
    create.add_argument("--tenant", required=True, help="the tenant the key acts as")
    create.add_argument("--name", default=None, help="a label to recognise the key by")
    create.add_argument(
        "--scope",
        action="append",
        default=None,
        metavar="SCOPES",
        help="what the key may do: predict (predict, OIP, reading models), read, train "
        "(datasets, jobs, sweeps), admin (deletes, aliases); comma-separated or repeated "
        "(default: all four; give an application only what it needs, docs/security.md)",
    )
    _home_option(create)
    create.set_defaults(run=cmd_keys_create)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id or prefix")
    revoke.add_argument("key", help="the key's id, or its prefix (ts_xxxxxxxx)")
    _home_option(revoke)
    revoke.set_defaults(run=cmd_keys_revoke)
    listing = keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    _home_option(listing)
    listing.set_defaults(run=cmd_keys_list)


def _home_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="use the embedded database under DIR, as `trainserve up --home DIR` does "
        "(default: TRAINSERVE_DATABASE_URL, else ~/.trainserve)",
    )


def _use_home(args) -> None:
    """`--home DIR` means the embedded URLs under DIR, like `up`."""
    if getattr(args, "home", None) is not None:
        home = args.home.expanduser()
        home.mkdir(parents=True, exist_ok=True)
        database_url, broker_url = sqlite_urls(home)
        os.environ[f"{PREFIX}DATABASE_URL"] = database_url
        os.environ[f"{PREFIX}BROKER_URL"] = broker_url


def _settings() -> Settings:
    settings = Settings.from_env()
    _configure_logging(settings.log_level, settings.log_format)
    return settings


def _configure_logging(level: str, log_format: str = "text") -> None:
    from service.logs import configure_logging

    configure_logging(level, log_format)


def cmd_db_upgrade(args) -> int:
    from service.db.migrate import upgrade

    _use_home(args)
    settings = _settings()
    upgrade(settings.database_url)
    log.info("database schema is at head")
    return 0


def cmd_db_wait(args) -> int:
    from service.db.migrate import wait_for_head

    _use_home(args)
    settings = _settings()
    if wait_for_head(settings.database_url, args.timeout):
        log.info("database schema is at head")
        return 0
    log.error(
        "database schema not at head after %.0f s (has `trainserve db upgrade` run?)", args.timeout
    )
    return 1


def _keys_database():
    from service.db.migrate import upgrade
    from service.db.session import Database

    settings = _settings()
    upgrade(settings.database_url)
    return Database.of(settings)


def cmd_keys_create(args) -> int:
    from service.usecases.keys import create_key, parse_scopes

    _use_home(args)
    scopes = parse_scopes(",".join(args.scope)) if args.scope else None
    key, plain = create_key(_keys_database(), args.tenant, args.name, scopes)
    print(
        f"created API key {key.id} ({key.prefix}...) for tenant {key.tenant!r} "
        f"with scopes {key.scopes.replace(' ', ',')}"
    )
    print("store it now: it is shown only once")
    print(plain)
    return 0


def cmd_keys_revoke(args) -> int:
    from service.usecases.keys import revoke_key

    _use_home(args)
    key = revoke_key(_keys_database(), args.key)
    print(f"revoked API key {key.id} ({key.prefix}...) of tenant {key.tenant!r}")
    return 0


def cmd_keys_list(args) -> int:
    from service.usecases.keys import list_keys

    _use_home(args)
    for key in list_keys(_keys_database()):
        state = "revoked" if key.revoked_at else "active"
        scopes = key.scopes.replace(" ", ",")
        line = f"{key.id}  {key.prefix}...  {key.tenant}  {scopes}  {state}  {key.name or ''}"
        print(line.rstrip())
    return 0


def _refuse_open_access(settings: Settings, host: str) -> None:
    from service.auth import is_loopback

    if settings.auth == AuthMode.OFF and not is_loopback(host):
        raise SystemExit(
            f"trainserve: refusing to listen on {host} with authentication off; set "
            f"{PREFIX}AUTH=required (and create keys with `trainserve keys create`)"
        )


WORKER_CLASSES = {"hybrid": "service.server.HybridWorker", "sync": "sync"}


def cmd_api(args) -> int:
    # One BLAS thread per API process, as one torch thread (_api_post_fork): NumPy's
    # OpenBLAS would split a one-row layer's product over two threads that then spin
    # for the next one, taking a core from the other process's requests. Read when
    # NumPy loads, so before anything imports it.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from gunicorn.app.base import BaseApplication

    settings = _settings()
    _refuse_open_access(settings, args.host)
    workers = args.workers or max(2, os.cpu_count() or 1)
    samples = _share_prometheus_samples(settings)

    options = _gunicorn_options(args, workers, settings)

    class _Gunicorn(BaseApplication):
        def load_config(self):
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self):
            import gc

            from service.app import create_app

            app = create_app(settings)
            # Everything imported so far (torch, pandas, SQLAlchemy...) lives as long as
            # the process: keep it out of the collector's full passes, which otherwise
            # stall a request now and then for hundreds of ms (bench/README.md).
            gc.collect()
            gc.freeze()
            return app

    log.info(
        "API on http://%s:%d with %d %s workers%s",
        args.host,
        args.port,
        workers,
        args.worker_class,
        f" ({args.threads} threads each for long requests)"
        if args.worker_class == "hybrid"
        else "",
    )
    master = os.getpid()
    try:
        _Gunicorn().run()
    finally:
        # A worker that exits unwinds through here too (it is a fork of this frame):
        # only the master removes the temporary samples directory the workers share.
        if not settings.prometheus_dir and os.getpid() == master:
            shutil.rmtree(samples, ignore_errors=True)
    return 0


def _gunicorn_options(args, workers: int, settings: Settings) -> dict[str, Any]:
    """gunicorn's settings for ``trainserve api``."""
    options: dict[str, Any] = {
        # No --preload: each worker builds its own app (torch and connections after fork).
        "bind": f"{args.host}:{args.port}",
        "workers": workers,
        # Requests one at a time in each process's main thread; event streams and
        # uploads in threads beside them (service/server.py).
        "worker_class": WORKER_CLASSES[args.worker_class],
        "timeout": 120,
        "graceful_timeout": 20,
        "accesslog": "-",
        "post_fork": _api_post_fork,
        "logger_class": _gunicorn_logger_via_root()
        if settings.log_format == "json"
        else "service.server.AccessLogger",
    }
    if args.worker_class == "hybrid":
        # Not for "sync": gunicorn turns a sync worker with threads into gthread.
        options["threads"] = args.threads
    if _gunicorn_has("control_socket_disable"):
        # gunicorn >= 25 opens a control socket at ~/.gunicorn/gunicorn.ctl: one path for
        # every server of the user (the first to stop deletes it for the others), and a
        # warning at start where the home is read-only (deploy/k8s). Nothing here uses it.
        options["control_socket_disable"] = True
    return options


def _gunicorn_has(setting: str) -> bool:
    from gunicorn.config import KNOWN_SETTINGS

    return any(known.name == setting for known in KNOWN_SETTINGS)


def _api_post_fork(_server, _worker) -> None:
    import torch

    torch.set_num_threads(1)


def _gunicorn_logger_via_root():
    """gunicorn's logger class, sending its error and access lines through trainserve's
    handler on the root logger (one JSON object per line) instead of its own handlers."""
    from service.server import AccessLogger

    class ViaRoot(AccessLogger):
        def setup(self, cfg):
            super().setup(cfg)
            for logger in (self.error_log, self.access_log):
                logger.handlers.clear()
                logger.propagate = True

    return ViaRoot


def _share_prometheus_samples(settings: Settings) -> Path:
    """prometheus_client's multiprocess mode for the gunicorn workers (service/metrics.py):
    an emptied directory in PROMETHEUS_MULTIPROC_DIR before any process imports the
    client, so each worker writes its samples there and a scrape sums them."""
    import tempfile

    path = Path(settings.prometheus_dir or tempfile.mkdtemp(prefix="trainserve-prometheus-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def cmd_worker(args) -> int:
    # A standby starts in the background, its first imports included (_wait_as_standby).
    background = _Background(BACKGROUND_S) if args.standby_fd is not None else None
    from service.ml import MLError
    from service.ml.device import worker_device
    from workers.celery_app import create_celery

    settings = _settings()
    try:
        device = worker_device(settings.device)
    except MLError as exc:
        raise SystemExit(f"trainserve worker: {exc}") from None
    # A GPU worker consumes the GPU queue; a CPU worker the training queue. --queues
    # may add the other, except that a CPU worker never takes GPU jobs.
    default = settings.gpu_queue if device != "cpu" else settings.queue
    queues = [q for q in (args.queues or default).split(",") if q]
    if device == "cpu" and settings.gpu_queue in queues:
        raise SystemExit(
            f"trainserve worker: {settings.gpu_queue!r} is the GPU jobs' queue and this worker "
            f"has no GPU ({PREFIX}DEVICE={settings.device})"
        )
    app = create_celery(settings, concurrency=args.concurrency, device=device, queues=queues)
    if background is not None and not _wait_as_standby(args.standby_fd, background):
        return 0
    log.info("worker trains on %s; queues %s", device, ", ".join(queues))
    queues = ",".join(queues)
    # Celery prints a plain-text banner at start; --quiet leaves it out when every line
    # must be one JSON object (the same facts are in the log lines above and below).
    quiet = ["--quiet"] if settings.log_format == "json" else []
    app.worker_main(
        [
            *quiet,
            "worker",
            f"--concurrency={args.concurrency}",
            f"--queues={queues}",
            "--pool=prefork",
            f"--loglevel={settings.log_level}",
            f"--hostname=trainserve-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            # Events and heartbeats are what Flower watches; off by default, they would be
            # constant traffic on the embedded SQLite broker.
            "--task-events" if args.events else "--without-heartbeat",
        ]
    )
    return 0


def _wait_as_standby(fd: int, background: _Background) -> bool:
    """Import what a worker imports, then wait for a byte on ``fd``: ``True`` to start
    consuming, ``False`` (end of file: the supervisor is gone) to exit.

    A standby starts in the :class:`_Background` (its autogroup at nice
    :data:`BACKGROUND_NICE` for :data:`BACKGROUND_S` seconds at most; it is a
    session, so an autogroup, of its own): its imports (~2.3 CPU-s) take the CPU that the
    API and the worker leave, and do not slow the requests of a service that has just
    started (bench/README.md, "A fresh up's first upload"). The byte, or the end of that
    time, restores the nice: a busy machine delays the standby by that much at most, and
    a takeover never waits behind it.
    """

    def preload() -> None:
        import torch._dynamo  # noqa: F401 - what the worker_init preload would do (~3 s)
        import torch.optim  # noqa: F401

    imports = threading.Thread(target=preload, name="standby-imports", daemon=True)
    imports.start()
    try:
        go = bool(os.read(fd, 1))  # the background's timer restores the nice meanwhile
    finally:
        background.end()
        os.close(fd)
    imports.join()
    return go


# The autogroup nice of start-up work done in the background (the lowest: a new standby
# worker's, the upkeep loop's imports), and for how long at most.
BACKGROUND_NICE = 19
BACKGROUND_S = 10.0
_AUTOGROUP = Path("/proc/self/autogroup")


class _Background:
    """This process's autogroup at nice :data:`BACKGROUND_NICE` from now until
    :meth:`end`, which a timer of its own calls ``seconds`` from now at the latest."""

    def __init__(self, seconds: float):
        self.before = _set_autogroup_nice(BACKGROUND_NICE)
        self.lock = threading.Lock()  # end() may come from the timer and a thread at once
        self.timer = threading.Timer(seconds, self.end)
        self.timer.daemon = True
        if self.before is not None:  # else nothing to restore
            self.timer.start()

    def end(self) -> None:
        """Restore the nice from before (once)."""
        self.timer.cancel()
        with self.lock:
            before, self.before = self.before, None
            if before is not None:
                _set_autogroup_nice(before)


def _set_autogroup_nice(nice: int) -> int | None:
    """Set the nice of this process's autogroup (Linux: the processes of one session
    share a CPU share, weighted by it); the previous nice, or ``None`` where there are no
    autogroups or it cannot be set (nothing changed). Any process may set 0–19 (only a
    negative nice needs privilege), so a nice raised here can be lowered back. It has
    no effect where the process is in a CPU cgroup other than the root one (a
    container, a systemd service with CPU accounting): the cgroup's share counts there."""
    try:
        before = int(_AUTOGROUP.read_text().split("nice")[1])
    except (OSError, ValueError, IndexError):
        return None
    for _ in range(20):
        try:
            _AUTOGROUP.write_text(str(nice))
            return before
        except BlockingIOError:  # EAGAIN: unprivileged, one change per 0.1 s machine-wide
            time.sleep(0.11)
        except OSError:
            return None
    log.warning("could not set this process's autogroup nice to %d", nice)
    return None


def cmd_upkeep(args) -> int:
    settings = _settings()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    upkeep = _Upkeep(settings)
    interval = args.interval or settings.sweep_interval_seconds
    log.info("upkeep running every %.0f s", interval)
    while not stop.is_set():
        upkeep.run_once()
        stop.wait(interval)
    return 0


class _Upkeep:
    """The upkeep loop's database and publisher, created once and reused for every pass."""

    def __init__(self, settings: Settings):
        from service.db.session import Database
        from workers.celery_app import create_celery
        from workers.publisher import CeleryPublisher

        self.settings = settings
        self.database = Database.of(settings)
        self.publisher = CeleryPublisher(create_celery(settings, database=self.database))

    def worker_died(self, name: str, pid: int) -> None:
        """``trainserve up`` saw its worker exit: fail its jobs over at once (the
        worker's Celery name is ``trainserve-<pid>@<host>``, see cmd_worker)."""
        import socket

        from service.usecases.workers import fail_over

        if name == "worker":
            node = f"trainserve-{pid}@{socket.gethostname()}/"
            fail_over(self.database, self.publisher, node, "trainserve up saw it exit")

    def prepare(self) -> None:
        """Import what a pass needs (torch and pandas among it, through the jobs and
        checkpoints modules: ~1.5–1.9 CPU-s), in the :class:`_Background` for
        :data:`BACKGROUND_S` at most. ``trainserve up`` calls this in a thread while its
        children start: the first pass, 5 s on, imported it at full priority on the first
        requests of a service that had just started (bench/README.md, "A fresh up's first
        upload"). ``up``'s autogroup is its session's: a shell that started it in the
        background shares that nice for these seconds."""
        background = _Background(BACKGROUND_S)
        try:
            import service.usecases.upkeep  # noqa: F401
        finally:
            background.end()

    def run_once(self) -> None:
        from service.usecases.upkeep import upkeep_pass

        try:
            report = upkeep_pass(self.database, self.settings, self.publisher)
        except Exception:  # noqa: BLE001 - one failed pass must not end the loop
            log.exception("upkeep pass failed; will try again")
            return
        if report.requeued or report.failed or report.published:
            log.info(
                "upkeep: %d requeued, %d failed, %d published",
                len(report.requeued),
                len(report.failed),
                len(report.published),
            )


def cmd_up(args) -> int:
    from service.db.migrate import upgrade

    home = (args.home or default_home()).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    database_url, broker_url = sqlite_urls(home)
    os.environ.setdefault(f"{PREFIX}DATABASE_URL", database_url)
    os.environ.setdefault(f"{PREFIX}BROKER_URL", broker_url)
    os.environ.setdefault(f"{PREFIX}AUTH", "off")
    os.environ.setdefault(f"{PREFIX}PROMETHEUS_DIR", str(home / "prometheus"))
    # The children (started with -P) import the `service` package up itself runs.
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    settings = _settings()
    _refuse_open_access(settings, args.host)
    upgrade(settings.database_url)
    supervisor = _Supervisor(_up_children(args), restart={"worker"}, standby={"worker"})
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    _log_up(settings, home)
    upkeep = _Upkeep(settings)
    supervisor.on_exit = upkeep.worker_died
    supervisor.start()
    threading.Thread(target=upkeep.prepare, name="upkeep-imports", daemon=True).start()
    log.info("API on http://%s:%d (docs at /docs); Ctrl-C stops", args.host, args.port)
    try:
        code = _supervise(supervisor, upkeep, settings, stop)
    finally:
        log.info("stopping")
        supervisor.stop()
    log.info("stopped")
    return code


def _up_children(args) -> dict[str, list[str]]:
    """The command lines of ``trainserve up``'s child processes, by name."""
    # -P: not the working directory first on sys.path (what -m does), so the children run
    # the code `up` itself runs (its root first on PYTHONPATH, cmd_up), not a `service`
    # package that happens to be in the directory `up` was started from (another
    # checkout: bench/README.md, 2026-12-01).
    cli = [sys.executable, "-P", "-m", "service.cli"]
    api = ["api", "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    return {"worker": [*cli, "worker", "--concurrency", "1"], "api": [*cli, *api]}


def _log_up(settings: Settings, home: Path) -> None:
    """Say where ``trainserve up`` keeps its state and whether callers need a key."""
    log.info("trainserve up: home %s", home)
    log.info("database %s; broker %s", _redact(settings.database_url), _redact(settings.broker_url))
    if settings.auth == AuthMode.OFF:
        log.warning(
            "authentication is OFF: every caller is tenant 'default' (loopback only; "
            "%sAUTH=required turns API keys on)",
            PREFIX,
        )
    else:
        log.info(
            "authentication is required: create keys with `trainserve keys create "
            "--tenant NAME --home %s`",
            home,
        )


def _supervise(
    supervisor: _Supervisor, upkeep: _Upkeep, settings: Settings, stop: threading.Event
) -> int:
    """Watch the children and run the upkeep loop until ``stop`` is set (0) or a child that
    is not restarted exits (1)."""
    next_upkeep = time.monotonic() + 5
    # Four checks a second: a dead worker is noticed, its jobs failed over and a new
    # worker started within a quarter of a second.
    while not stop.wait(0.25):
        if not supervisor.check():
            return 1
        if time.monotonic() >= next_upkeep:
            upkeep.run_once()
            next_upkeep = time.monotonic() + settings.sweep_interval_seconds
    return 0


def _redact(url: str) -> str:
    """A URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL (a broker URL, say)
        from kombu.utils.url import maybe_sanitize_url

        return maybe_sanitize_url(url)


class _Supervisor:
    """Child processes of ``trainserve up``: restarts the ones in ``restart`` when they die.

    For the names in ``standby`` a second process is kept started and waiting (imports
    done, torch loaded, nothing consumed) on a pipe; when the active one dies, a byte on
    the pipe makes the standby the active one, within about a second instead of a cold
    start's several, and a new standby is started a few seconds later.

    The first standby starts with the other children, in the background
    (:func:`_wait_as_standby`). Started 5 s after them at full priority, its imports
    (~2.3 CPU-s) landed on a fresh ``up``'s first requests (bench/README.md, "A fresh
    up's first upload").
    """

    STANDBY_DELAY_S = 5.0

    def __init__(
        self, commands: dict[str, list[str]], restart: set[str], standby: set[str] = frozenset()
    ):
        self.commands = commands
        self.restart = restart
        self.standby = standby
        self.children: dict[str, subprocess.Popen] = {}
        self.standbys: dict[str, tuple[subprocess.Popen, int]] = {}
        self.standby_due: dict[str, float] = {}
        self.restarts: dict[str, int] = {}
        # Called with (name, pid) when a restartable child has died, before it restarts.
        self.on_exit = lambda name, pid: None

    def start(self) -> None:
        for name in self.commands:
            self._spawn(name)
        for name in self.standby:
            self._spawn_standby(name)

    def _spawn(self, name: str) -> None:
        # A session of its own: Ctrl-C reaches only `up`, which stops children in order.
        self.children[name] = subprocess.Popen(self.commands[name], start_new_session=True)

    def _spawn_standby(self, name: str) -> None:
        read, write = os.pipe()
        process = subprocess.Popen(
            [*self.commands[name], "--standby-fd", str(read)],
            pass_fds=(read,),
            start_new_session=True,
        )
        os.close(read)
        self.standbys[name] = (process, write)

    def _promote(self, name: str) -> bool:
        """Make the waiting standby of ``name`` the active child; ``False`` if there is none."""
        process, write = self.standbys.pop(name, (None, -1))
        if process is None:
            return False
        try:
            if process.poll() is not None:
                return False
            os.write(write, b"go")
        except OSError:
            return False
        finally:
            os.close(write)
        self.children[name] = process
        return True

    def check(self) -> bool:
        """Restart dead restartable children; ``False`` if a vital one died."""
        for name, child in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            if name not in self.restart:
                log.error("%s exited with status %s; stopping", name, code)
                return False
            self.restarts[name] = self.restarts.get(name, 0) + 1
            log.warning(
                "%s exited with status %s; restarting it (restart %d)",
                name,
                code,
                self.restarts[name],
            )
            # Whatever of it survives (a pool process whose parent was killed) goes too,
            # so that exactly one attempt trains once its jobs are failed over.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            self.on_exit(name, child.pid)
            # At once the first three times (a job waits for the new worker); then backing
            # off, so a worker that cannot start does not spin.
            if self.restarts[name] > 3:
                time.sleep(min(30, 2 ** min(self.restarts[name], 5)))
            elif self._promote(name):
                log.info("%s: the standby took over", name)
                self.standby_due[name] = time.monotonic() + self.STANDBY_DELAY_S
                continue
            self._spawn(name)
        now = time.monotonic()
        for name, due in list(self.standby_due.items()):
            if now >= due:
                del self.standby_due[name]
                self._spawn_standby(name)
        for name, (process, _write) in list(self.standbys.items()):
            if process.poll() is not None and name not in self.standby_due:
                log.warning("the standby %s exited with status %s", name, process.returncode)
                os.close(self.standbys.pop(name)[1])
                self.standby_due[name] = now + 30
        return True

    def stop(self, timeout: float = 15.0) -> None:
        for process, write in self.standbys.values():
            os.close(write)  # the standby reads end-of-file and exits
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for child in self.children.values():
            if child.poll() is None:
                # SIGTERM is Celery's warm shutdown: the worker hands its running job
                # back at its last checkpoint and exits. gunicorn stops gracefully on TERM.
                # A child still alive at the deadline is killed; its job's lease lapses
                # and the upkeep loop requeues it.
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        waiting = [*self.children.items(), *((n, p) for n, (p, _) in self.standbys.items())]
        for name, child in waiting:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


if __name__ == "__main__":
    sys.exit(main())
