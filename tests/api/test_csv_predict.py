"""Predict with Accept: text/csv: batch predict of a CSV body, and JSON bodies answered in CSV."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from service.app import create_app
from service.usecases import batch_predict
from tests.support.data import mixed_table
from tests.support.training import train_model

ROOT = Path(__file__).resolve().parents[2]
CSV = {"Accept": "text/csv"}
FEATURES = ["x1", "x2", "colour", "flag"]


@pytest.fixture
def trained(app):
    train_model(app, hyperparameters={"epochs": 3, "seed": 0})


def feature_csv(n: int, seed: int = 1) -> bytes:
    frame = mixed_table(n, seed).drop(columns="species").astype(object)
    frame["flag"] = frame["flag"].map({True: "true", False: "false"})
    return frame.to_csv(index=False, na_rep="NA").encode()


def post_csv(client, body, path="/v1/models/iris/predict", **kwargs):
    """A CSV body with Accept: text/csv; buffered, so the answer's file is closed."""
    kwargs.setdefault("content_type", "text/csv")
    headers = CSV | kwargs.pop("headers", {})
    return client.post(path, data=body, headers=headers, buffered=True, **kwargs)


def read_answer(response) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def json_predictions(client, body: bytes, path="/v1/models/iris/predict") -> dict:
    response = client.post(path, data=body, content_type="text/csv")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_csv_answer_matches_the_json_predict_row_for_row(client, trained):
    body = feature_csv(500)
    expected = json_predictions(client, body)
    rows = read_answer(post_csv(client, body))
    classes = expected["classes"]
    assert rows[0] == ["label"] + [f"p_{c}" for c in classes]
    assert len(rows) == 1 + 500
    for row, want in zip(rows[1:], expected["predictions"], strict=True):
        assert row[0] == want["label"]
        got = [float(v) for v in row[1:]]
        assert got == pytest.approx(
            [want["probabilities"][c] for c in classes], rel=1e-6, abs=1e-12
        )


@pytest.fixture
def small_chunks(monkeypatch):
    """64 rows a chunk, so a few hundred rows cross many chunk boundaries."""
    monkeypatch.setattr(batch_predict, "CHUNK_ROWS", 64)


def test_rows_keep_their_order_across_chunks_and_versions(client, trained, small_chunks):
    body = feature_csv(500, seed=2)
    path = "/v1/models/iris/versions/1/predict"
    expected = json_predictions(client, body, path)
    response = post_csv(client, body, path)
    rows = read_answer(response)
    assert [r[0] for r in rows[1:]] == [p["label"] for p in expected["predictions"]]
    first = [float(v) for v in rows[1][1:]]
    assert first == pytest.approx(list(expected["predictions"][0]["probabilities"].values()))
    assert response.headers["X-Model-Name"] == "iris"
    assert response.headers["X-Model-Version"] == "1"
    assert int(response.headers["Content-Length"]) == len(response.data)


def test_quoted_commas_and_newlines_are_one_cell(client, trained):
    body = b'x1,x2,colour,flag\n1.5,"2,5",red,true\n0.5,1,"bl\nue",false\n-1,,"r,ed",\n'
    records = [
        {"x1": 1.5, "x2": None, "colour": "red", "flag": True},
        {"x1": 0.5, "x2": 1, "colour": "bl\nue", "flag": False},
        {"x1": -1, "colour": "r,ed"},
    ]
    # "2,5" is not a number: the first try names it; the rows without it are answered
    bad = post_csv(client, body)
    assert bad.status_code == 400 and "records[0].x2" in bad.get_json()["errors"]
    body = body.replace(b'"2,5"', b"")
    expected = client.post("/v1/models/iris/predict", json={"records": records}).get_json()
    rows = read_answer(post_csv(client, body))
    assert len(rows) == 4
    for row, want in zip(rows[1:], expected["predictions"], strict=True):
        assert [float(v) for v in row[1:]] == pytest.approx(
            list(want["probabilities"].values()), rel=1e-6
        )


def test_a_json_body_can_be_answered_in_csv(client, trained):
    records = [{"x1": 2.0, "colour": "red"}, {"x1": -2.0, "flag": False}]
    expected = client.post("/v1/models/iris/predict", json={"records": records}).get_json()
    response = client.post("/v1/models/iris/predict", json={"records": records}, headers=CSV)
    rows = read_answer(response)
    assert rows[0] == ["label", "p_setosa", "p_versicolor", "p_virginica"]
    assert [r[0] for r in rows[1:]] == [p["label"] for p in expected["predictions"]]
    assert response.headers["X-Model-Version"] == "1"


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, text/csv"])
def test_without_a_preference_for_csv_the_answer_is_json(client, trained, accept):
    headers = {"Accept": accept} if accept else {}
    response = client.post(
        "/v1/models/iris/predict", data=feature_csv(3), content_type="text/csv", headers=headers
    )
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert len(response.get_json()["predictions"]) == 3


def late(row: int, cell: bytes) -> bytes:
    """500 good rows with ``cell`` as row ``row``'s line (1 = the first data row)."""
    lines = feature_csv(500).splitlines(keepends=True)
    lines[row] = cell
    return b"".join(lines)


@pytest.mark.parametrize(
    "body, field, words",
    [
        (b"x1,petal\n1,2\n", "records.petal", "unknown column"),
        (b"x1,x1\n1,2\n", "file", "more than once"),
        (b"", "file", "empty"),
        (b"x1,x2\n", "file", "no data rows"),
        (b"x1,x2\n\xff\xfe,1\n", "x1", "line 2, column 1"),
        (late(450, b"tall,1,red,true\n"), "records[449].x1", "row 450 has 'tall'"),
        (late(451, b"1,1,red,maybe\n"), "records[450].flag", "true or false"),
        (late(452, b"1,1,red,true,9\n"), "file", "line 453"),
        (late(453, b"1,1,r\xe9d,true\n"), "colour", "not UTF-8"),
        (late(454, b"1,1," + b"r" * 20_000 + b",true\n"), "colour", "row 454"),
    ],
    ids=[
        "unknown-column",
        "duplicate-column",
        "empty",
        "header-only",
        "non-utf8-header",
        "late-number",
        "late-boolean",
        "late-ragged",
        "late-non-utf8",
        "late-long-cell",
    ],
)
def test_every_bad_row_is_a_400_before_any_answer(
    client, trained, small_chunks, body, field, words
):
    """The body is read to its end before the answer starts, so an error on row 450 of a
    stream that already predicted seven chunks is still a 400 problem, not half a CSV."""
    response = post_csv(client, body)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    assert field in problem["errors"], problem
    assert words.lower() in problem["detail"].lower(), problem


def test_unknown_model_is_404_problem(client, trained):
    response = post_csv(client, feature_csv(3), "/v1/models/nope/predict")
    assert response.status_code == 404 and response.content_type == "application/problem+json"


@pytest.fixture
def limited(settings, publisher):
    app = create_app(
        dataclasses.replace(
            settings,
            max_request_bytes=5_000,
            max_batch_predict_bytes=40_000,
            max_batch_predict_rows=1_000,
            max_predict_rows=10,
        ),
        publisher=publisher,
    )
    train_model(app, hyperparameters={"epochs": 1})
    yield app.test_client()
    app.extensions["trainserve"].close()


def test_batch_predict_has_its_own_body_and_row_limits(limited):
    body = feature_csv(600)  # about 15 kB and 600 rows: over the JSON limits, under these
    assert 5_000 < len(body) < 40_000
    assert (
        limited.post("/v1/models/iris/predict", data=body, content_type="text/csv").status_code
        == 413
    )
    assert len(read_answer(post_csv(limited, body))) == 601
    too_long = post_csv(limited, feature_csv(1_001))
    assert too_long.status_code == 400 and "limit of 1000 rows" in too_long.get_json()["detail"]
    too_big = post_csv(limited, feature_csv(2_000))
    assert too_big.status_code == 413 and too_big.content_type == "application/problem+json"
    # Sent chunked (no Content-Length), the body is cut off where it passes the limit.
    chunked = limited.post(
        "/v1/models/iris/predict",
        input_stream=io.BytesIO(feature_csv(2_000)),
        content_type="text/csv",
        headers=CSV,
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
        buffered=True,
    )
    assert chunked.status_code == 413 and chunked.content_type == "application/problem+json"


def test_a_csv_body_answered_in_json_is_read_no_further_than_its_row_limit(client, settings):
    """The body is parsed as it is read (never held whole), and the reading stops once it
    passes max_predict_rows: here at most a few of its 2.6 MB are read. (The row limit
    comes before the model is looked up, so none is needed.)"""
    rows = b"".join(b"%d,red,true\n" % i for i in range(200_000))
    body = io.BytesIO(b"x1,colour,flag\n" + rows)
    size = len(body.getvalue())
    response = client.post(
        "/v1/models/iris/predict", input_stream=body, content_type="text/csv", content_length=size
    )
    assert response.status_code == 400 and response.content_type == "application/problem+json"
    limit = settings.max_predict_rows
    assert response.get_json()["errors"] == {
        "file": [f"the file has more than the limit of {limit} rows"]
    }
    assert body.tell() < size / 4


PROBE = (sys.executable, "-m", "tests.support.batch_memory")


def test_300_000_rows_stream_in_bounded_memory(tmp_path):
    """300,000 rows through the app in a fresh process: peak memory rises by a bounded
    amount, far less than what holding the same rows at once costs
    (tests/support/batch_memory.py)."""
    for mode in ("stream", "buffered"):
        (tmp_path / mode).mkdir()
    runs = {
        mode: subprocess.Popen(
            [*PROBE, mode, "300000", str(tmp_path / mode)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        for mode in ("stream", "buffered")
    }
    results = {}
    for mode, run in runs.items():
        out, _ = run.communicate(timeout=300)
        assert run.returncode == 0, out
        results[mode] = json.loads(out.strip().splitlines()[-1])
    assert results["stream"]["rows"] == results["buffered"]["rows"] == 300_000
    stream, held = results["stream"]["growth_mib"], results["buffered"]["growth_mib"]
    assert stream < 96, results
    assert held > 2 * stream, results


def labelled_csv(n: int, seed: int = 1) -> tuple[bytes, bytes]:
    """The same rows with and without the target column (a labelled file, as trained on)."""
    frame = mixed_table(n, seed).astype(object)
    frame["flag"] = frame["flag"].map({True: "true", False: "false"})
    with_target = frame.to_csv(index=False, na_rep="NA").encode()
    return with_target, frame.drop(columns="species").to_csv(index=False, na_rep="NA").encode()


def test_a_labelled_file_is_scored_as_it_is_and_the_target_is_ignored(client, trained):
    """curl users batch-score the file they trained on: the target column is set aside,
    the answer is the same as without it, and X-Ignored-Columns says so."""
    labelled, bare = labelled_csv(30)
    # CSV answered in CSV (batch predict, read in chunks).
    scored, plain = post_csv(client, labelled), post_csv(client, bare)
    assert scored.status_code == 200, scored.get_json()
    assert scored.headers["X-Ignored-Columns"] == "species"
    assert "X-Ignored-Columns" not in plain.headers
    assert scored.get_data() == plain.get_data()
    # CSV answered in JSON, and JSON records answered in JSON.
    scored = client.post("/v1/models/iris/predict", data=labelled, content_type="text/csv")
    plain = client.post("/v1/models/iris/predict", data=bare, content_type="text/csv")
    assert scored.headers["X-Ignored-Columns"] == "species"
    assert scored.get_json()["predictions"] == plain.get_json()["predictions"]
    records = list(csv.DictReader(io.StringIO(labelled.decode())))
    scored = client.post("/v1/models/iris/predict", json={"records": records})
    assert scored.status_code == 200 and scored.headers["X-Ignored-Columns"] == "species"
    assert scored.get_json()["predictions"] == plain.get_json()["predictions"]
    # Any other unknown column is still a 400 naming it.
    records[0]["petal"] = "1"
    refused = client.post("/v1/models/iris/predict", json={"records": records})
    assert refused.status_code == 400 and "records.petal" in refused.get_json()["errors"]


def _packed(body: bytes, codec: str) -> bytes:
    return gzip.compress(body) if codec == "gzip" else pa.compress(body, "zstd", asbytes=True)


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-encoding", "by-content"])
def test_a_compressed_body_is_predicted_as_the_plain_one(client, trained, codec, declared):
    """gzip and zstd CSV bodies, with or without their Content-Encoding, are read as they
    are uploaded: the same answers, in CSV (batch) and in JSON, as the plain body's."""
    body = feature_csv(300, seed=3)
    headers = {"Content-Encoding": codec} if declared else {}
    want_csv = read_answer(post_csv(client, body))
    got_csv = read_answer(post_csv(client, _packed(body, codec), headers=headers))
    assert got_csv == want_csv
    want_json = json_predictions(client, body)
    response = client.post(
        "/v1/models/iris/predict",
        data=_packed(body, codec),
        content_type="text/csv",
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["predictions"] == want_json["predictions"]


def test_a_compressed_body_that_is_not_valid_or_of_another_coding_is_a_4xx(client, trained):
    for headers in ({"Accept": "text/csv"}, {}):
        broken = gzip.compress(feature_csv(50))[:-40] + b"\0" * 40
        response = client.post(
            "/v1/models/iris/predict", data=broken, content_type="text/csv", headers=headers
        )
        assert response.status_code == 400, response.get_data(as_text=True)[:300]
        assert response.content_type == "application/problem+json"
        assert "gzip" in response.get_json()["detail"]
        response = client.post(
            "/v1/models/iris/predict",
            data=feature_csv(5),
            content_type="text/csv",
            headers={"Content-Encoding": "br", **headers},
        )
        assert response.status_code == 415 and "Content-Encoding" in response.get_json()["detail"]


def test_a_compressed_body_expands_no_further_than_the_row_limit(limited):
    """A small gzip body of many rows (a "zip bomb") stops at the row limit, as a plain
    body does: what it may expand to is bounded by the rows, not by its size."""
    rows = b"1,0.5,red,true\n" * 300_000
    bomb = gzip.compress(b"x1,x2,colour,flag\n" + rows)
    assert len(bomb) < 40_000  # under the body limit
    response = post_csv(limited, bomb)
    assert response.status_code == 400 and "limit of 1000 rows" in response.get_json()["detail"]
    one_line = gzip.compress(b"x1,x2,colour,flag\n" + b"7" * 30_000_000)
    assert len(one_line) < 40_000
    response = post_csv(limited, one_line)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.content_type == "application/problem+json"
    assert "cannot be parsed" in response.get_json()["detail"]
    # Answered in JSON, a row may be any length: the decompressed body is held to what a
    # plain one may be (max_request_bytes, 5,000 here), not to the rows.
    small_bomb = gzip.compress(b"x1,x2,colour,flag\n" + b"7" * 3_000_000)
    assert len(small_bomb) < 5_000
    response = limited.post("/v1/models/iris/predict", data=small_bomb, content_type="text/csv")
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["errors"] == {
        "body": ["decompressed, the gzip data is larger than the limit of 5000 bytes"]
    }
