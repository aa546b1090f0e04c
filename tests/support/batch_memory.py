"""Peak memory of one CSV predict of many rows, measured in a fresh process.

``python -m tests.support.batch_memory MODE ROWS DIR`` trains a small model in DIR, writes ROWS
feature rows to a CSV file there (10,000 at a time, so writing it costs little memory),
warms up with a small request, then predicts the file and prints one JSON line: the rows
answered and how far the process's peak resident memory (VmHWM) rose.

MODE ``stream`` sends the file through the app (Accept: text/csv, the body read from the
file as a WSGI input stream, the answer read back a block at a time); ``buffered`` does
what an implementation without chunks does: the whole body in memory, parsed into one
frame, predicted at once and formatted as one string.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from service.app import create_app
from service.config import Settings
from service.db.migrate import upgrade
from service.ml import tabular
from service.ml.batch import predictions_csv
from service.usecases import models
from tests.conftest import RecordingPublisher
from tests.support.data import mixed_table
from tests.support.training import train_model

PATH = "/v1/models/iris/predict"


def peak_mib() -> float:
    """The process's peak resident memory so far."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def write_rows(path: Path, rows: int) -> None:
    with path.open("w") as out:
        for start in range(0, rows, 10_000):
            part = mixed_table(min(10_000, rows - start), seed=start).drop(columns="species")
            part = part.astype(object)
            part["flag"] = part["flag"].map({True: "true", False: "false"})
            part.to_csv(out, index=False, header=start == 0, na_rep="NA")


def stream(client, path: Path) -> int:
    lines = 0
    with path.open("rb") as body:
        response = client.post(
            PATH,
            input_stream=body,
            content_length=path.stat().st_size,
            content_type="text/csv",
            headers={"Accept": "text/csv"},
        )
        assert response.status_code == 200, response.get_data()
        for block in response.response:
            lines += block.count(b"\n")
        response.close()
    return lines - 1


def buffered(app, path: Path) -> int:
    svc = app.extensions["trainserve"]
    found = models.get_version(svc.database, "default", "iris")
    bundle = models.loaded(svc.database, svc.models, found)
    frame = tabular.read_csv(path.read_bytes(), max_rows=10**8, max_columns=100)
    text = predictions_csv(bundle.classes, bundle.predict_proba(frame))
    return text.count("\n") - 1


def main(mode: str, rows: int, workdir: Path) -> None:
    url = f"sqlite:///{workdir / 'memory.db'}"
    upgrade(url)
    settings = Settings.from_env({}, database_url=url, broker_url="memory://", auth="off")
    app = create_app(settings, publisher=RecordingPublisher())
    train_model(app, hyperparameters={"epochs": 1, "seed": 0})
    warm, big = workdir / "warm.csv", workdir / "rows.csv"
    write_rows(warm, 25_000)
    write_rows(big, rows)
    client = app.test_client()
    run = (lambda p: stream(client, p)) if mode == "stream" else (lambda p: buffered(app, p))
    run(warm)
    before = peak_mib()
    answered = run(big)
    print(json.dumps({"mode": mode, "rows": answered, "growth_mib": peak_mib() - before}))
    app.extensions["trainserve"].close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
