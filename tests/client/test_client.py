"""trainserve_client against the app on a real port, jobs trained in threads
(tests/support/live_server.py)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import socket
from wsgiref.simple_server import make_server

import pandas as pd
import pytest

from tests.support.data import mixed_csv, mixed_table
from tests.support.live_server import ThreadWorker
from trainserve_client import ApiError, Client, ConnectionFailed

FAST = {"epochs": 3, "hidden_layers": [16], "early_stopping_patience": None, "seed": 1}


@pytest.fixture
def flowers(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_bytes(mixed_csv(120))
    return path


@pytest.fixture
def trained(live, flowers):
    """A client and a finished job of the model ``flowers``."""
    client = Client(live.url)
    job = client.wait(client.train(flowers, target="species", **FAST)["id"])
    assert job["status"] == "succeeded", job
    return client, job


def test_upload_takes_a_csv_file_a_json_file_a_dataframe_or_records(live, flowers, tmp_path):
    client = Client(live.url)
    frame = mixed_table(30)
    records = json.loads(frame.to_json(orient="records"))
    (tmp_path / "rows.json").write_text(json.dumps({"records": records}))
    uploads = [
        client.upload(flowers),
        client.upload(tmp_path / "rows.json"),
        client.upload(frame, name="frame"),
        client.upload(records, name="records"),
    ]
    assert [u["name"] for u in uploads] == ["flowers", "rows", "frame", "records"]
    assert [u["n_rows"] for u in uploads] == [120, 30, 30, 30]
    for upload in uploads:
        types = {c["name"]: c["type"] for c in upload["columns"]}
        assert types == {
            "x1": "numeric",
            "x2": "numeric",
            "colour": "categorical",
            "flag": "boolean",
            "species": "categorical",
        }
    assert {d["id"] for d in client.datasets()} == {u["id"] for u in uploads}


def test_upload_declares_column_types_whatever_the_data_is(live, flowers, tmp_path):
    client = Client(live.url)
    frame = mixed_table(30)
    records = json.loads(frame.to_json(orient="records"))
    (tmp_path / "rows.json").write_text(json.dumps(records))
    for data in (flowers, tmp_path / "rows.json", frame, records):
        upload = client.upload(data, column_types={"flag": "categorical"})
        types = {c["name"]: c["type"] for c in upload["columns"]}
        assert types["flag"] == "categorical", repr(data)[:80]


def test_train_and_wait_follow_the_event_stream_with_a_callback_per_epoch(live, flowers):
    client = Client(live.url)
    job = client.train(flowers, target="species", **FAST)
    assert job["status"] == "queued" and job["model_name"] == "flowers"
    assert job["hyperparameters"]["hidden_layers"] == [16]
    epochs, statuses = [], []
    final = client.wait(job["id"], on_epoch=epochs.append, on_status=statuses.append)
    assert final["status"] == "succeeded" and final["model"] == {"name": "flowers", "version": 1}
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert epochs == client.metrics(job["id"])
    assert statuses[-1]["status"] == "succeeded"
    # Resuming after the final event: the server answers 204 and the client stops.
    assert list(client.events(job["id"], last_event_id="3:succeeded")) == []
    assert [e.id for e in client.events(job["id"], last_event_id="2")] == ["3", "3:succeeded"]


def test_wait_by_polling_gives_the_same_callbacks(live, flowers):
    client = Client(live.url)
    dataset = client.upload(flowers)
    job = client.train(dataset_id=dataset["id"], target="species", model_name="polled", **FAST)
    epochs, statuses = [], []
    final = client.wait(
        job["id"], epochs.append, on_status=statuses.append, stream=False, poll_seconds=0.1
    )
    assert final["status"] == "succeeded"
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert statuses[-1]["status"] == "succeeded"


def test_a_stream_closed_by_the_server_is_resumed_without_loss_or_repeats(
    serve, settings, monkeypatch, flowers
):
    from service.api.progress import resources

    monkeypatch.setattr(resources, "POLL_SECONDS", 0.05)
    # Streams last 0.3 s and the worker starts after 1 s: the client must reconnect.
    live = serve(dataclasses.replace(settings, event_stream_seconds=0.3), ThreadWorker(1.0))
    client = Client(live.url)
    connections = []
    client.session.hooks["response"].append(
        lambda r, *a, **k: connections.append(r) if r.url.endswith("/events") else None
    )
    job = client.train(flowers, target="species", **{**FAST, "epochs": 4})
    ids = [event.id for event in client.events(job["id"])]
    assert len(connections) >= 3
    assert len(ids) == len(set(ids)), ids
    assert ids[0] == "0:queued" and ids[-1] == "4:succeeded"
    assert [i for i in ids if ":" not in i] == ["1", "2", "3", "4"]


def test_metrics_jobs_models_and_plot(trained):
    client, job = trained
    assert [e["epoch"] for e in client.metrics(job["id"])] == [1, 2, 3]
    assert [j["id"] for j in client.jobs()] == [job["id"]]
    assert client.jobs(status="failed") == []
    assert [(m["name"], m["latest_version"]) for m in client.models()] == [("flowers", 1)]
    assert client.model("flowers", 1)["classes"] == ["setosa", "versicolor", "virginica"]
    assert client.plot(job["id"], "png").startswith(b"\x89PNG")


def test_predict_records_and_a_dataframe(trained):
    client, _ = trained
    rows = [{"x1": 2.5, "x2": 1.0, "colour": "red", "flag": True}, {"x1": -2.5, "colour": None}]
    answer = client.predict("flowers", rows)
    assert answer["model"] == {"name": "flowers", "version": 1}
    labels = [p["label"] for p in answer["predictions"]]
    frame = pd.DataFrame(rows, index=["a", "b"])
    result = client.predict_frame("flowers", frame, version=1)
    assert list(result.columns) == ["label", "p_setosa", "p_versicolor", "p_virginica"]
    assert list(result.index) == ["a", "b"] and list(result["label"]) == labels
    assert result.iloc[:, 1:].sum(axis=1).tolist() == pytest.approx([1.0, 1.0])
    assert result.loc["b", "p_setosa"] == answer["predictions"][1]["probabilities"]["setosa"]


def check_predictions_csv(text: str, n_rows: int) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["label", "p_setosa", "p_versicolor", "p_virginica"]
    assert len(rows) == n_rows
    for row in rows:
        probabilities = {k[2:]: float(v) for k, v in row.items() if k.startswith("p_")}
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert row["label"] == max(probabilities, key=probabilities.get)
    return rows


def test_predict_csv_writes_label_and_one_probability_per_class(trained, tmp_path):
    client, _ = trained
    rows = mixed_table(25, seed=4).drop(columns="species")
    rows.to_csv(tmp_path / "rows.csv", index=False)
    written = client.predict_csv("flowers", tmp_path / "rows.csv", tmp_path / "out.csv")
    assert written == 25
    check_predictions_csv((tmp_path / "out.csv").read_text(), 25)
    # A text file works too, and a training file's target column can be left out.
    out = io.StringIO()
    (tmp_path / "train.csv").write_bytes(mixed_csv(10))
    client.predict_csv("flowers", tmp_path / "train.csv", out, drop_columns=["species"])
    check_predictions_csv(out.getvalue(), 10)


def test_predict_csv_streams_a_text_csv_answer_to_the_file(tmp_path):
    """The server side of CSV answers (Accept: text/csv) follows the agreed contract:
    header label,p_<class>...; this small WSGI app serves exactly that, so the client's
    streaming path is exercised over HTTP whether or not the API has it yet."""
    seen = {}

    def contract_server(environ, start_response):
        seen["content_type"] = environ.get("CONTENT_TYPE")
        seen["accept"] = environ.get("HTTP_ACCEPT")
        seen["body"] = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/csv; charset=utf-8")])
        yield b"label,p_no,p_s\xc3\xad\n"
        yield b"s\xc3\xad,0.25,0.75\nno,0.5,0.5\n"

    with make_server("127.0.0.1", 0, contract_server) as server:
        import threading

        thread = threading.Thread(target=server.handle_request)
        thread.start()
        (tmp_path / "in.csv").write_text("a\n1\n2\n")
        client = Client(f"http://127.0.0.1:{server.server_port}")
        written = client.predict_csv("m", tmp_path / "in.csv", tmp_path / "out.csv")
        thread.join(10)
    assert seen == {"content_type": "text/csv", "accept": "text/csv", "body": b"a\n1\n2\n"}
    assert written == 2
    assert (tmp_path / "out.csv").read_text() == "label,p_no,p_sí\nsí,0.25,0.75\nno,0.5,0.5\n"


def test_server_errors_are_one_exception_with_a_one_line_message(live, flowers):
    client = Client(live.url)
    with pytest.raises(ApiError) as missing:
        client.job("nope")
    assert missing.value.status == 404
    assert str(missing.value) == "404 Not Found: no job with id 'nope'"
    with pytest.raises(ApiError) as invalid:
        client.train(flowers, target="species", epochs=0, dropout=2)
    error = invalid.value
    assert error.status == 400 and error.field.startswith("hyperparameters.")
    assert set(error.errors) == {"hyperparameters.epochs", "hyperparameters.dropout"}
    assert "\n" not in str(error) and str(error).startswith("400 Bad Request: hyperparameters.")
    assert "(and 1 more)" in str(error)


def test_an_unreachable_server_is_one_clear_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionFailed) as failed:
        Client(f"http://127.0.0.1:{port}").models()
    assert str(failed.value) == (
        f"cannot reach http://127.0.0.1:{port}: connection refused (is the server running?)"
    )


def test_url_and_key_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRAINSERVE_URL", "http://example.invalid:9/")
    monkeypatch.setenv("TRAINSERVE_API_KEY", "ts_secret")
    client = Client()
    assert client.url == "http://example.invalid:9"
    assert client.session.headers["Authorization"] == "Bearer ts_secret"
    monkeypatch.delenv("TRAINSERVE_URL")
    assert Client(api_key="k").url == "http://127.0.0.1:8000"
