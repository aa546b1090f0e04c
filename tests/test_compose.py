"""docker-compose.yml cannot run here (no Docker engine): parse it and check what it names."""

import shlex
import tomllib
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
    assert {"postgres", "redis", "migrate", "api", "worker", "sweeper", "flower"} <= set(services)
    for name in ("postgres", "redis", "api"):
        assert "healthcheck" in services[name], name
    assert services["api"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_every_trainserve_command_exists_and_parses():
    parser = _parser()
    seen = set()
    for name, service in compose()["services"].items():
        if "build" not in service or name == "flower":
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


def test_flower_watches_the_workers_broker_from_the_image():
    services = compose()["services"]
    flower = services["flower"]
    assert flower["build"] == services["worker"]["build"]
    assert (
        flower["environment"]["TRAINSERVE_BROKER_URL"]
        == (services["worker"]["environment"]["TRAINSERVE_BROKER_URL"])
    )
    shell, flag, script = flower["command"]
    assert (shell, flag) == ("sh", "-c")
    # Compose turns $$ into $; the shell then reads the broker URL from the environment.
    words = shlex.split(script.replace("$$", "$"))
    assert words[:5] == ["exec", "celery", "--broker", "$TRAINSERVE_BROKER_URL", "flower"]
    assert "--port=5555" in words
    assert flower["ports"] == ["127.0.0.1:5555:5555"]  # no login: this machine only
    # The workers send the events Flower shows, and the image has Flower installed.
    assert "--events" in services["worker"]["command"]
    assert "-e '.[flower]'" in (ROOT / "Dockerfile").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("flower") for d in extras["optional-dependencies"]["flower"])
