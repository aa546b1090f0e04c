"""The ``trainserve`` command: run the service whole (``up``) or its parts separately."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from service.config import PREFIX, Settings, default_home, sqlite_urls

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

    up = sub.add_parser("up", help="run API + worker + sweeper on embedded defaults")
    up.add_argument(
        "--home", type=Path, default=None, help=f"where the files live (default {default_home()})"
    )
    up.add_argument("--host", default="127.0.0.1", help="address of the API (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=8000, help="port of the API (default 8000)")
    up.add_argument("--workers", type=int, default=2, help="API processes (default 2)")
    up.set_defaults(run=cmd_up)

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
    worker.set_defaults(run=cmd_worker)

    sweeper = sub.add_parser("sweeper", help="run the periodic upkeep loop")
    sweeper.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between passes (default TRAINSERVE_SWEEP_INTERVAL_SECONDS)",
    )
    sweeper.set_defaults(run=cmd_sweeper)

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

    from service.cli_client import add_client_commands

    add_client_commands(sub)
    return parser


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
    return Database(settings.database_url)


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

    if settings.auth == "off" and not is_loopback(host):
        raise SystemExit(
            f"trainserve: refusing to listen on {host} with authentication off; set "
            f"{PREFIX}AUTH=required (and create keys with `trainserve keys create`)"
        )


WORKER_CLASSES = {"hybrid": "service.server.HybridWorker", "sync": "sync"}


def cmd_api(args) -> int:
    from gunicorn.app.base import BaseApplication

    settings = _settings()
    _refuse_open_access(settings, args.host)
    workers = args.workers or max(2, os.cpu_count() or 1)
    samples = _share_prometheus_samples(settings)

    class _Gunicorn(BaseApplication):
        def load_config(self):
            # No --preload: each worker builds its own app (torch and connections after fork).
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", workers)
            # Requests one at a time in each process's main thread; event streams and
            # uploads in threads beside them (service/server.py).
            self.cfg.set("worker_class", WORKER_CLASSES[args.worker_class])
            self.cfg.set("threads", args.threads)
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("accesslog", "-")
            self.cfg.set("post_fork", _api_post_fork)
            if settings.log_format == "json":
                self.cfg.set("logger_class", _gunicorn_logger_via_root())

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


def _api_post_fork(_server, _worker) -> None:
    import torch

    torch.set_num_threads(1)


def _gunicorn_logger_via_root():
    """gunicorn's logger class, sending its error and access lines through trainserve's
    handler on the root logger (one JSON object per line) instead of its own handlers."""
    from gunicorn.glogging import Logger

    class ViaRoot(Logger):
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
    from workers.celery_app import create_celery

    settings = _settings()
    app = create_celery(settings, concurrency=args.concurrency)
    queues = args.queues or settings.queue
    app.worker_main(
        [
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


def cmd_sweeper(args) -> int:
    settings = _settings()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sweeper = _Sweeper(settings)
    interval = args.interval or settings.sweep_interval_seconds
    log.info("sweeper running every %.0f s", interval)
    while not stop.is_set():
        sweeper.run_once()
        stop.wait(interval)
    return 0


class _Sweeper:
    """The sweeper's database and publisher, created once and reused for every pass."""

    def __init__(self, settings: Settings):
        from service.db.session import Database
        from workers.celery_app import create_celery
        from workers.publisher import CeleryPublisher

        self.settings = settings
        self.database = Database(settings.database_url)
        self.publisher = CeleryPublisher(create_celery(settings, database=self.database))

    def run_once(self) -> None:
        from service.usecases.sweeper import sweep

        try:
            report = sweep(self.database, self.settings, self.publisher)
        except Exception:  # noqa: BLE001 - one failed pass must not end the loop
            log.exception("sweep failed; will try again")
            return
        if report.requeued or report.failed or report.published:
            log.info(
                "sweep: %d requeued, %d failed, %d published",
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
    settings = _settings()
    _refuse_open_access(settings, args.host)
    upgrade(settings.database_url)
    supervisor = _Supervisor(
        {
            "worker": [sys.executable, "-m", "service.cli", "worker", "--concurrency", "1"],
            "api": [
                sys.executable,
                "-m",
                "service.cli",
                "api",
                "--host",
                args.host,
                "--port",
                str(args.port),
                "--workers",
                str(args.workers),
            ],
        },
        restart={"worker"},
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("trainserve up: home %s", home)
    log.info("database %s; broker %s", _redact(settings.database_url), _redact(settings.broker_url))
    if settings.auth == "off":
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
    supervisor.start()
    sweeper = _Sweeper(settings)
    log.info("API on http://%s:%d (docs at /docs); Ctrl-C stops", args.host, args.port)
    next_sweep = time.monotonic() + 5
    code = 0
    try:
        while not stop.wait(1.0):
            if not supervisor.check():
                code = 1
                break
            if time.monotonic() >= next_sweep:
                sweeper.run_once()
                next_sweep = time.monotonic() + settings.sweep_interval_seconds
    finally:
        log.info("stopping")
        supervisor.stop()
    log.info("stopped")
    return code


def _redact(url: str) -> str:
    """A URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL (a broker URL, say)
        from kombu.utils.url import maybe_sanitize_url

        return maybe_sanitize_url(url)


class _Supervisor:
    """Child processes of ``trainserve up``: restarts the ones in ``restart`` when they die."""

    def __init__(self, commands: dict[str, list[str]], restart: set[str]):
        self.commands = commands
        self.restart = restart
        self.children: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}

    def start(self) -> None:
        for name in self.commands:
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        # A session of its own: Ctrl-C reaches only `up`, which stops children in order.
        self.children[name] = subprocess.Popen(self.commands[name], start_new_session=True)

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
            time.sleep(min(30, 2 ** min(self.restarts[name], 5)) if self.restarts[name] > 3 else 1)
            self._spawn(name)
        return True

    def stop(self, timeout: float = 15.0) -> None:
        for child in self.children.values():
            if child.poll() is None:
                # SIGQUIT is Celery's cold shutdown: the job's lease lapses and the
                # sweeper hands it to the next worker. gunicorn stops gracefully on TERM.
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, child in self.children.items():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


if __name__ == "__main__":
    sys.exit(main())
