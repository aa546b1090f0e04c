"""A wheel of the project carries the dashboard's files (package data), not just code."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_dashboard(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--disable-pip-version-check", "--wheel-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("trainserve-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = ROOT / "service" / "web" / "static"
    expected = {
        f"service/web/static/{path.relative_to(static).as_posix()}"
        for path in static.rglob("*")
        if path.is_file()
    }
    assert {
        "service/web/static/dashboard.html",
        "service/web/static/dashboard.css",
        "service/web/static/js/app.js",
        "service/web/static/js/pages/jobs.js",
    } <= expected
    assert expected <= names
