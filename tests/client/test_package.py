"""The client is a package of its own: it imports, and its commands run, without the
server's frameworks, and its distribution depends on nothing but its own needs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("torch", "flask", "sqlalchemy", "celery", "marshmallow", "numpy", "service")


def test_the_client_and_its_commands_pull_in_no_server_framework():
    code = (
        "import sys, contextlib, io\n"
        "import trainserve_client, trainserve_client.cli as cli\n"
        "for argv in (['--help'], ['train', '--help'], ['sweep', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            cli.main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        f"print(','.join(m for m in {SERVER_ONLY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_imports_point_one_way():
    """client and formatting import no command module; commands import no cli."""
    package = ROOT / "client" / "trainserve_client"
    for module, forbidden in (
        ("client.py", ("commands", "sweep_commands", "cli", "formatting")),
        ("formatting.py", ("client", "commands", "sweep_commands", "cli")),
        ("commands.py", ("sweep_commands", "cli")),
        ("sweep_commands.py", ("cli",)),
    ):
        text = (package / module).read_text()
        for name in forbidden:
            assert f"trainserve_client.{name} import" not in text, (module, name)
            assert f"import trainserve_client.{name}" not in text, (module, name)


def test_the_client_distribution_lists_only_its_own_dependencies():
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    names = [d.split(">")[0].split("<")[0].split("=")[0].strip() for d in project["dependencies"]]
    assert names == ["requests"]
    assert project["scripts"] == {"trainserve-client": "trainserve_client.cli:main"}


def test_the_client_ships_the_servers_hyperparameter_table():
    shipped = ROOT / "client" / "trainserve_client" / "hyperparameters.py"
    assert shipped.resolve() == (ROOT / "service" / "ml" / "hyperparameters.py").resolve()


def test_trainserve_offers_the_client_commands_too():
    from service.cli import _parser

    commands = _parser()._subparsers._group_actions[0].choices
    assert {"train", "predict", "jobs", "models", "metrics", "sweep", "sweeps", "alias"} <= set(
        commands
    )
    assert {"api", "worker", "upkeep", "up", "db"} <= set(commands)


def test_the_client_wheel_holds_the_client_alone(tmp_path):
    import zipfile

    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--disable-pip-version-check", "--wheel-dir", str(tmp_path), str(ROOT / "client")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("trainserve_client-*.whl")
    archive = zipfile.ZipFile(wheel)
    modules = {n for n in archive.namelist() if n.endswith(".py")}
    assert modules == {
        f"trainserve_client/{name}.py"
        for name in (
            "__init__",
            "cli",
            "client",
            "commands",
            "formatting",
            "hyperparameters",
            "sweep_commands",
        )
    }
    table = archive.read("trainserve_client/hyperparameters.py").decode()
    assert table == (ROOT / "service" / "ml" / "hyperparameters.py").read_text()
    (metadata,) = [n for n in archive.namelist() if n.endswith("METADATA")]
    requires = [
        line.split(":", 1)[1].strip()
        for line in archive.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    assert [r for r in requires if "extra ==" not in r] == ["requests<3,>=2.31"]
