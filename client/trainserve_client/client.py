"""A small Python client of the trainserve REST API, for batch scripts, the CLI and tests.

    from trainserve_client import Client

    client = Client()                      # TRAINSERVE_URL / TRAINSERVE_API_KEY, or arguments
    job = client.train("flowers.csv", target="species", epochs=30, learning_rate=0.01)
    job = client.wait(job["id"], on_epoch=lambda e: print(e["epoch"], e["val_loss"]))
    client.predict("flowers", [{"petal_length": 6.5, "colour": "red"}])["predictions"]
    client.predict_frame("flowers", frame)                  # DataFrame in, DataFrame out
    client.predict_csv("flowers", "rows.csv", "out.csv")    # label,p_<class>... per row

Only ``requests`` is needed (pandas for DataFrames); importing this module pulls in
neither Flask nor torch. Errors:

    ClientError            base class
    ├── ApiError           the server answered an error (its problem+json): status,
    │                      title, detail, errors; ``str()`` is one line
    └── ConnectionFailed   the server could not be reached
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED = ("succeeded", "failed", "cancelled")
_STREAM_READ_TIMEOUT = 60  # seconds; the server sends a heartbeat every 15 s


class ClientError(Exception):
    """Base class of the client's errors."""


class ConnectionFailed(ClientError):
    """The server could not be reached (refused, timed out, name unknown)."""


class ApiError(ClientError):
    """The server answered an error; its RFC 9457 problem fields, and one line as ``str``."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        errors: dict[str, list[str]] | None = None,
    ):
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or {}
        super().__init__(str(self))

    @property
    def field(self) -> str | None:
        """The first field the server named, if any."""
        return next(iter(self.errors), None)

    def __str__(self) -> str:
        line = f"{self.status} {self.title}"
        if self.detail and self.detail != self.title:
            line += f": {self.detail}"
        # The server's detail usually starts with the field; name it when it does not.
        if self.field and not (self.detail or "").startswith(self.field):
            line += f" (field {self.field})"
        more = len(self.errors) - 1
        if more > 0 and "more)" not in line:
            line += f" (and {more} more)"
        return " ".join(line.split())

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = " ".join(response.text.split())[:200]
            return cls(response.status_code, response.reason or "Error", text or None)
        errors = body.get("errors") if isinstance(body.get("errors"), dict) else None
        return cls(
            int(body.get("status") or response.status_code),
            str(body.get("title") or response.reason or "Error"),
            body.get("detail") or body.get("error"),
            errors,
        )


@dataclass
class Event:
    """One Server-Sent Event of a job's stream: ``kind`` "epoch" or "status"."""

    kind: str
    id: str | None
    data: dict[str, Any] = field(default_factory=dict)


class Client:
    """The trainserve API over HTTP.

    Parameters
    ----------
    url:
        The server, default ``TRAINSERVE_URL`` or http://127.0.0.1:8000.
    api_key:
        Sent as ``Authorization: Bearer``; default ``TRAINSERVE_API_KEY`` (none: the
        server must run with authentication off, as ``trainserve up`` does).
    timeout:
        Seconds to wait for an answer (uploads and predictions included).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        session: requests.Session | None = None,
    ):
        self.url = (url or os.environ.get("TRAINSERVE_URL") or DEFAULT_URL).rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        key = api_key or os.environ.get("TRAINSERVE_API_KEY")
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    # -- datasets --------------------------------------------------------------------

    def upload(
        self,
        data: Any,
        name: str | None = None,
        *,
        column_types: dict[str, str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict:
        """Upload a dataset: a file's path (CSV, optionally ``.gz``/``.zst``; Parquet;
        JSON Lines; or JSON), a pandas DataFrame, or a list of records (dicts). A JSON file
        holds a list of records or ``{"records": [...]}``. A table file is streamed as the
        request body, never read whole; ``progress(sent, total)`` is called as it goes.
        Returns the dataset (id, columns with inferred types, ...); ``column_types``
        declares types instead of inferring them, whatever ``data`` is."""
        typed = {"column_types": json.dumps(column_types)} if column_types else {}
        if isinstance(data, (str, Path)):
            path = Path(data)
            if path.suffix.lower() == ".json":
                records = json.loads(path.read_text())
                if isinstance(records, dict):
                    records = records.get("records")
                return self._request(
                    "POST",
                    "/v1/datasets",
                    params=typed,
                    json={"name": name or path.stem, "records": records},
                )
            with open(path, "rb") as f:
                return self._request(
                    "POST",
                    "/v1/datasets",
                    params={"name": name or table_stem(path), **typed},
                    data=_Progress(f, path.stat().st_size, progress),
                    headers=_table_headers(path),
                )
        if isinstance(data, list):
            return self._request(
                "POST",
                "/v1/datasets",
                params=typed,
                json={"name": name or "records", "records": data},
            )
        csv_text = data.to_csv(index=False)
        return self._request(
            "POST",
            "/v1/datasets",
            params={"name": name or "dataframe", **typed},
            data=csv_text.encode(),
            headers={"Content-Type": "text/csv"},
        )

    def datasets(self) -> list[dict]:
        return self._request("GET", "/v1/datasets")

    # -- jobs ------------------------------------------------------------------------

    def train(
        self,
        data: Any = None,
        *,
        target: str,
        dataset_id: str | None = None,
        model_name: str | None = None,
        features: list[str] | None = None,
        column_types: dict[str, str] | None = None,
        hyperparameters: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        **more_hyperparameters: Any,
    ) -> dict:
        """Submit a training job and return it (status "queued").

        ``data`` is what ``upload`` takes (a file is streamed to the server first, with
        ``progress(sent, total)`` as it goes), or pass the ``dataset_id`` of an uploaded
        dataset. The model name defaults to the file's stem. Hyperparameters come as a
        dict, as keywords (``epochs=30, hidden_layers=[32, 32]``), or both.
        """
        params = {**(hyperparameters or {}), **more_hyperparameters}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body: dict[str, Any] = {"target": target, "hyperparameters": params}
        if features is not None:
            body["features"] = features
        if column_types is not None:
            body["column_types"] = column_types
        if data is not None:
            if model_name is None and isinstance(data, (str, Path)):
                model_name = table_stem(Path(data))
            dataset_id = self.upload(data, progress=progress)["id"]
        if dataset_id is None:
            raise ValueError("give the data to train on, or the dataset_id of an uploaded one")
        if model_name is None:
            raise ValueError("model_name is needed unless the data is a file")
        body.update(dataset_id=dataset_id, model_name=model_name)
        return self._request("POST", "/v1/jobs", json=body, headers=headers)

    def job(self, job_id: str) -> dict:
        return self._request("GET", f"/v1/jobs/{job_id}")

    def jobs(self, **filters: Any) -> list[dict]:
        """Jobs, newest first; filters: status, model_name, dataset_id, limit, offset."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self._request("GET", "/v1/jobs", params=params)

    def metrics(self, job_id: str) -> list[dict]:
        """One dict per finished epoch: epoch, train_loss, val_loss, val_accuracy, ..."""
        return self._request("GET", f"/v1/jobs/{job_id}/metrics")["epochs"]

    def cancel(self, job_id: str) -> dict:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel")

    def plot(self, job_id: str, image_format: str = "svg") -> bytes:
        """The job's loss and accuracy curves as SVG or PNG bytes."""
        response = self._send("GET", f"/v1/jobs/{job_id}/plot", params={"format": image_format})
        return response.content

    def events(self, job_id: str, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's Server-Sent Events until its final status event, reconnecting with
        ``Last-Event-ID`` whenever the server closes the stream early (it does after a
        few minutes) or the connection drops, so no event is lost or repeated."""
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            try:
                response = self._send(
                    "GET",
                    f"/v1/jobs/{job_id}/events",
                    headers=headers,
                    stream=True,
                    timeout=(10, _STREAM_READ_TIMEOUT),
                )
                if response.status_code == 204:  # resumed after the final event
                    response.close()
                    return
                with response:
                    for event in _parse_events(response.iter_lines(decode_unicode=True)):
                        failures = 0
                        last_event_id = event.id or last_event_id
                        yield event
                        if event.kind == "status" and event.data.get("status") in FINISHED:
                            return
            except (ConnectionFailed, requests.RequestException):
                failures += 1
                if failures > 5:
                    raise
                time.sleep(min(10, 2**failures / 2))

    def wait(
        self,
        job_id: str,
        on_epoch: Callable[[dict], Any] | None = None,
        *,
        on_status: Callable[[dict], Any] | None = None,
        stream: bool = True,
        poll_seconds: float = 1.0,
        timeout: float | None = None,
    ) -> dict:
        """Wait until the job ends and return it; ``on_epoch(metrics)`` is called once per
        finished epoch, in order, and ``on_status(job)`` on every change of status.

        Follows the server's event stream; with ``stream=False`` (or a server without
        one) it polls every ``poll_seconds``. ``timeout`` (seconds) raises
        ``TimeoutError``; the job keeps training.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if stream:
            try:
                for event in self.events(job_id):
                    if event.kind == "epoch" and on_epoch:
                        on_epoch(event.data)
                    elif event.kind == "status" and on_status:
                        on_status(event.data)
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"job {job_id} did not finish in {timeout} s")
                return self.job(job_id)
            except ApiError as exc:
                if exc.status != 404 or "job" in (exc.detail or ""):
                    raise
        return self._poll(job_id, on_epoch, on_status, poll_seconds, deadline, timeout)

    def _poll(self, job_id, on_epoch, on_status, poll_seconds, deadline, timeout) -> dict:
        seen, status = 0, None
        while True:
            job = self.job(job_id)
            if job["status"] != status and on_status and job["status"] not in FINISHED:
                on_status(job)
            for row in self.metrics(job_id) if job["epoch"] > seen else []:
                if row["epoch"] > seen:
                    seen = row["epoch"]
                    if on_epoch:
                        on_epoch(row)
            if job["status"] != status and on_status and job["status"] in FINISHED:
                on_status(job)
            status = job["status"]
            if status in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not finish in {timeout} s")
            time.sleep(poll_seconds)

    # -- models and predictions ------------------------------------------------------

    def models(self) -> list[dict]:
        """Model names with their latest version."""
        return self._request("GET", "/v1/models")

    def model(self, name: str, version: int | None = None) -> dict:
        """A model's versions (newest first), or one version's details."""
        if version is None:
            return self._request("GET", f"/v1/models/{name}")
        return self._request("GET", f"/v1/models/{name}/versions/{version}")

    def predict(self, model: str, records: list[dict], version: int | None = None) -> dict:
        """The server's answer for rows given as dicts: model, classes, and per row a
        label and the probability of every class."""
        return self._request("POST", _predict_path(model, version), json={"records": records})

    def predict_frame(self, model: str, frame: Any, version: int | None = None) -> Any:
        """A pandas DataFrame in, a DataFrame out: ``label`` and ``p_<class>`` columns,
        one row per input row, with the input's index."""
        import pandas as pd

        records = json.loads(frame.to_json(orient="records", date_format="iso"))
        answer = self.predict(model, records, version)
        rows = list(_prediction_rows(answer))
        return pd.DataFrame(rows[1:], columns=rows[0], index=frame.index)

    def evaluate_csv(
        self,
        model: str,
        source: str | Path,
        version: int | None = None,
        target: str | None = None,
    ) -> dict:
        """Metrics of a model version (default: the latest) on a labelled CSV file, sent
        as it is read: accuracy, macro-F1, log-loss, ECE, the reliability bins, the
        confusion matrix and per-class precision, recall, F1 and support."""
        path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")
        params = {"target": target} if target else None
        with open(source, "rb") as f:
            return self._request(
                "POST",
                path + "/evaluate",
                data=f,
                params=params,
                headers={"Content-Type": "text/csv"},
            )

    def predict_csv(
        self,
        model: str,
        source: str | Path,
        destination: str | Path | IO[str],
        version: int | None = None,
        drop_columns: Iterable[str] = (),
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Predict every row of a CSV file and write ``label,p_<class>,...`` rows, in
        input order, to ``destination`` (a path or a text file). Returns the rows written.

        The CSV is sent as ``text/csv`` asking for ``text/csv`` back, which is streamed
        to the destination; a server that answers JSON instead is converted to the same
        CSV here. ``drop_columns`` are left out of what is sent (a training file's target
        column, say). A gzip or zstd file is sent as it is (the server decompresses it);
        ``drop_columns`` then cannot be used.
        """
        size = Path(source).stat().st_size
        with open(source, "rb") as f:
            drop = set(drop_columns)
            if drop and compression(source):
                raise ValueError(
                    "drop_columns needs a plain CSV file; a compressed one is sent as it is "
                    "(the server sets the model's target column aside by itself)"
                )
            body = _Progress(f, size, progress)
            stream = _without_columns(body, drop) if drop else body
            response = self._send(
                "POST",
                _predict_path(model, version),
                data=stream,
                headers={"Content-Type": "text/csv", "Accept": "text/csv"},
                stream=True,
            )
        with response, _open_text(destination) as out:
            if response.headers.get("Content-Type", "").startswith("text/csv"):
                return _copy_csv(response, out)
            writer = csv.writer(out, lineterminator="\n")
            rows = _prediction_rows(response.json())
            writer.writerow(next(rows))
            count = 0
            for row in rows:
                writer.writerow(row)
                count += 1
            return count

    # -- sweeps and aliases ----------------------------------------------------------

    def sweep(
        self,
        data: Any = None,
        *,
        target: str,
        search: dict[str, Any],
        dataset_id: str | None = None,
        model_name: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        **options: Any,
    ) -> dict:
        """Submit a hyperparameter sweep (docs/sweeps.md) and return it.

        ``search`` is ``{"grid": {name: [values]}}`` or ``{"random": {"n_trials": N,
        "parameters": {name: {"log_uniform": [lo, hi]}}}}``; ``options`` are the other
        fields of ``POST /v1/sweeps``: metric, mode, max_parallel, early_stopping,
        promote_to, features, column_types. ``data`` is uploaded first, as for ``train``.
        """
        if data is not None:
            if model_name is None and isinstance(data, (str, Path)):
                model_name = table_stem(Path(data))
            dataset_id = self.upload(data)["id"]
        if dataset_id is None or model_name is None:
            raise ValueError("give the data (or a dataset_id) and a model_name")
        body = {
            "dataset_id": dataset_id,
            "target": target,
            "model_name": model_name,
            "hyperparameters": hyperparameters or {},
            "search": search,
            **{k: v for k, v in options.items() if v is not None},
        }
        return self._request("POST", "/v1/sweeps", json=body)

    def sweeps(self, **filters: Any) -> list[dict]:
        """Sweeps, newest first; filters: status, limit, offset."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self._request("GET", "/v1/sweeps", params=params)

    def get_sweep(self, sweep_id: str) -> dict:
        """The sweep with its counts, leader, winner and leaderboard (best first)."""
        return self._request("GET", f"/v1/sweeps/{sweep_id}")

    def cancel_sweep(self, sweep_id: str) -> dict:
        return self._request("POST", f"/v1/sweeps/{sweep_id}/cancel")

    def wait_sweep(
        self,
        sweep_id: str,
        on_update: Callable[[dict], None] | None = None,
        *,
        poll_seconds: float = 1.0,
        timeout: float | None = None,
    ) -> dict:
        """Poll the sweep until it ends; ``on_update`` gets every state seen."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = self.get_sweep(sweep_id)
            if on_update is not None:
                on_update(sweep)
            if sweep["status"] not in ("queued", "running"):
                return sweep
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} did not finish in {timeout} s")
            time.sleep(poll_seconds)

    def set_alias(self, model: str, alias: str, version: int) -> dict:
        """Point ``model@alias`` at ``version`` (created or moved atomically)."""
        return self._request(
            "PUT", f"/v1/models/{model}/aliases/{alias}", json={"version": version}
        )

    def delete_alias(self, model: str, alias: str) -> None:
        self._send("DELETE", f"/v1/models/{model}/aliases/{alias}").close()

    # -- plumbing --------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, self.url + path, **kwargs)
        except requests.ConnectionError as exc:
            raise ConnectionFailed(f"cannot reach {self.url}: {_reason(exc)}") from None
        except requests.Timeout:
            raise ConnectionFailed(f"{self.url} did not answer in time") from None
        if response.status_code >= 400:
            error = ApiError.from_response(response)
            response.close()
            raise error
        return response


# The first bytes of a gzip and a zstd file: every command sends them as they are (the
# server decompresses uploads, predict and evaluate bodies).
_COMPRESSED = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}


def compression(path: str | Path) -> str | None:
    """``gzip`` or ``zstd`` for a compressed file (by its first bytes), else ``None``."""
    with open(path, "rb") as f:
        start = f.read(4)
    return next((kind for magic, kind in _COMPRESSED.items() if start.startswith(magic)), None)


def _predict_path(model: str, version: int | None) -> str:
    if version is None:
        return f"/v1/models/{model}/predict"
    return f"/v1/models/{model}/versions/{version}/predict"


def _prediction_rows(answer: dict) -> Iterator[list]:
    """The CSV rows of a JSON predict answer: the header, then one row per prediction."""
    keys = [_key(c) for c in answer["classes"]]
    yield ["label", *(f"p_{key}" for key in keys)]
    for prediction in answer["predictions"]:
        probabilities = prediction["probabilities"]
        yield [_key(prediction["label"]), *(probabilities[key] for key in keys)]


def _key(label: Any) -> str:
    """A class label as the server writes it in keys and CSV (``true``, not ``True``)."""
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


def _without_columns(body: IO[bytes], drop: set[str]) -> Iterator[bytes]:
    """A CSV stream without the named columns (only those present are removed), as
    chunks of about 1 MiB: the file is never read whole."""
    text = io.TextIOWrapper(io.BufferedReader(body, 1 << 20), encoding="utf-8-sig", newline="")
    rows = csv.reader(text)
    header = next(rows, None)
    if header is None:
        return
    keep = [i for i, name in enumerate(header) if name not in drop]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([header[i] for i in keep])
    for row in rows:
        writer.writerow([row[i] for i in keep if i < len(row)])
        if out.tell() > 1 << 20:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()


class _Progress(io.RawIOBase):
    """A file read as a request body, reporting ``progress(sent, total)`` as it goes;
    its length tells requests the Content-Length."""

    def __init__(self, file: IO[bytes], total: int, progress=None):
        super().__init__()
        self.file, self.total, self.sent, self.progress = file, total, 0, progress

    def __len__(self) -> int:
        return self.total

    def tell(self) -> int:
        return self.sent  # with __len__, what requests sends as the Content-Length

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(1 << 20 if size is None or size < 0 else max(size, 1 << 16))
        self.sent += len(data)
        if self.progress is not None:
            self.progress(self.sent, self.total)
        return data

    def readinto(self, buffer) -> int:
        data = self.file.read(len(buffer))
        buffer[: len(data)] = data
        self.sent += len(data)
        if self.progress is not None:
            self.progress(self.sent, self.total)
        return len(data)


_TABLE_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".pq": "application/vnd.apache.parquet",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
}


def table_stem(path: Path) -> str:
    """``data/big.csv.gz`` → ``big``."""
    name = path.name
    for suffix in (".gz", ".gzip", ".zst", ".zstd"):
        name = name.removesuffix(suffix)
    return name.rsplit(".", 1)[0] if "." in name else name


def _table_headers(path: Path) -> dict[str, str]:
    """Content-Type by the file's extension (CSV unless Parquet or JSON Lines)."""
    name = path.name.lower()
    for suffix in (".gz", ".gzip", ".zst", ".zstd"):
        name = name.removesuffix(suffix)
    kind = next((t for s, t in _TABLE_TYPES.items() if name.endswith(s)), "text/csv")
    return {"Content-Type": kind}


def _copy_csv(response: requests.Response, out: IO[str]) -> int:
    """Stream a CSV answer to ``out``; the number of rows after the header."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    for chunk in response.iter_content(chunk_size=1 << 20):
        text = decoder.decode(chunk)
        lines += text.count("\n")
        out.write(text)
    out.write(decoder.decode(b"", final=True))
    return max(0, lines - 1)


@contextmanager
def _open_text(destination: str | Path | IO[str]) -> Iterator[IO[str]]:
    """A path opened for writing, or a text file used as it is (and left open)."""
    if isinstance(destination, (str, Path)):
        with open(destination, "w", newline="", encoding="utf-8") as file:
            yield file
    else:
        yield destination


def _parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Server-Sent Events from the stream's lines (comments and ``retry`` ignored)."""
    kind, event_id, data = "message", None, []
    for line in lines:
        if line == "":
            if data:
                yield Event(kind, event_id, json.loads("\n".join(data)))
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


def _reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return "connection refused (is the server running?)"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return text.split(": ", 1)[-1][:200]
