"""docker-compose.yml cannot run here (no Docker engine): parse it and check what it names."""

import shlex
from dataclasses import fields
from pathlib import Path

import yaml

from service.cli import _parser
from service.config import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_part_of_the_production_layout_is_there():
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "sweeper"} <= set(services)
    for name in ("postgres", "redis", "api"):
        assert "healthcheck" in services[name], name
    assert services["api"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_every_trainserve_command_exists_and_parses():
    parser = _parser()
    seen = set()
    for name, service in compose()["services"].items():
        if "build" not in service:
            continue
        command = service["command"]
        command = shlex.split(command) if isinstance(command, str) else command
        assert command[0] == "trainserve", name
        args = parser.parse_args(command[1:])
        assert hasattr(args, "run"), f"{name}: {command} is not a complete trainserve command"
        seen.add(command[1])
    assert seen == {"db", "api", "worker", "sweeper"}


def test_the_environment_names_real_settings_and_the_image_builds_from_here():
    known = {PREFIX + f.name.upper() for f in fields(Settings)}
    for name, service in compose()["services"].items():
        if "build" not in service:
            continue
        env = service["environment"]
        assert set(env) <= known, (name, set(env) - known)
        assert env["TRAINSERVE_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["TRAINSERVE_BROKER_URL"].startswith("redis://")
        assert (ROOT / service["build"] / "Dockerfile").is_file()
    dockerfile = (ROOT / "Dockerfile").read_text()
    for path in ("service", "workers", "migrations", "constraints.txt"):
        assert path in dockerfile
