"""The client commands, on ``trainserve`` (with the server's) or alone on
``trainserve-client``: they talk to a running server through ``trainserve_client.client``."""

from __future__ import annotations

import argparse
import sys

from trainserve_client.commands import add_job_commands
from trainserve_client.sweep_commands import add_sweep_commands


def add_client_commands(sub: argparse._SubParsersAction) -> None:
    """Register every client command on a parser's subcommands."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", help="the server (default TRAINSERVE_URL, http://127.0.0.1:8000)")
    server.add_argument("--api-key", help="API key (default TRAINSERVE_API_KEY)")
    add_job_commands(sub, server)
    add_sweep_commands(sub, server)


def main(argv: list[str] | None = None) -> int:
    """``trainserve-client``: the client commands without the server's."""
    parser = argparse.ArgumentParser(
        prog="trainserve-client", description="Train and predict on a trainserve server."
    )
    add_client_commands(parser.add_subparsers(metavar="COMMAND"))
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
