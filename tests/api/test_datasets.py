"""/v1/datasets through the app factory."""

import dataclasses
import gzip
import io

import pyarrow as pa
import pytest
from sqlalchemy import func, select

from service.app import create_app
from service.db.models import BlobPart
from tests.support.data import mixed_csv


def test_upload_csv_body_and_read_it_back(client):
    response = client.post("/v1/datasets?name=iris", data=mixed_csv(), content_type="text/csv")
    assert response.status_code == 201
    body = response.get_json()
    assert body["name"] == "iris" and body["n_rows"] == 300 and body["n_columns"] == 5
    columns = {c["name"]: c for c in body["columns"]}
    x2 = columns["x2"]
    assert (x2["type"], x2["missing"], x2["n_unique"]) == ("numeric", 34, 265)
    assert set(x2["summary"]) == {"min", "max", "mean", "std"}
    assert x2["summary"]["min"] <= x2["summary"]["mean"] <= x2["summary"]["max"]
    assert sum(columns["colour"]["summary"]["counts"].values()) == 300 - 24
    assert columns["colour"]["type"] == "categorical" and columns["colour"]["missing"] == 24
    assert columns["flag"]["type"] == "boolean"
    assert client.get(f"/v1/datasets/{body['id']}").get_json() == body
    assert [d["id"] for d in client.get("/v1/datasets").get_json()] == [body["id"]]


def test_upload_multipart_names_the_dataset_after_the_file(client):
    response = client.post(
        "/v1/datasets",
        data={"file": (io.BytesIO(mixed_csv(20)), "flowers.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201
    assert response.get_json()["name"] == "flowers"


def _packed(body: bytes, codec: str) -> bytes:
    return gzip.compress(body) if codec == "gzip" else pa.compress(body, "zstd", asbytes=True)


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_compressed_csv_is_stored_as_the_plain_one(client, codec):
    """gzip and zstd, by Content-Encoding, by their first bytes alone, or as a form's
    ``.csv.gz``/``.csv.zst`` file: the same dataset as the plain CSV's."""
    plain = client.post("/v1/datasets?name=t", data=mixed_csv(), content_type="text/csv")
    want = {k: v for k, v in plain.get_json().items() if k in ("n_rows", "columns")}
    packed = _packed(mixed_csv(), codec)
    suffix = ".csv.gz" if codec == "gzip" else ".csv.zst"
    answers = [
        client.post(
            "/v1/datasets?name=t",
            data=packed,
            content_type="text/csv",
            headers={"Content-Encoding": codec},
        ),
        client.post("/v1/datasets?name=t", data=packed, content_type="text/csv"),
        client.post(
            "/v1/datasets",
            data={"file": (io.BytesIO(packed), "flowers" + suffix)},
            content_type="multipart/form-data",
        ),
    ]
    for response in answers:
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        assert {k: v for k, v in body.items() if k in want} == want
    assert answers[-1].get_json()["name"] == "flowers"


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_broken_compressed_upload_is_a_400_and_stores_nothing(client, app, codec):
    packed = _packed(mixed_csv(2_000), codec)
    broken = packed[: len(packed) // 2] + bytes(64)
    response = client.post("/v1/datasets?name=t", data=broken, content_type="text/csv")
    assert response.status_code == 400 and response.content_type == "application/problem+json"
    assert codec in response.get_json()["errors"]["file"][0]
    response = client.post(
        "/v1/datasets?name=t",
        data=mixed_csv(),
        content_type="text/csv",
        headers={"Content-Encoding": "br"},
    )
    assert response.status_code == 415 and "Content-Encoding" in response.get_json()["detail"]
    assert client.get("/v1/datasets").get_json() == []
    with app.extensions["trainserve"].database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(BlobPart)) == 0


def test_upload_json_records(client):
    response = client.post(
        "/v1/datasets",
        json={"name": "tiny", "records": [{"a": 1, "b": "x"}, {"a": None, "b": "y"}]},
    )
    assert response.status_code == 201
    assert [(c["name"], c["type"], c["missing"]) for c in response.get_json()["columns"]] == [
        ("a", "numeric", 1),
        ("b", "categorical", 0),
    ]


#: ?column_types= declaring the column ``zip`` categorical.
_ZIP_QUERY = "column_types=%7B%22zip%22%3A%22categorical%22%7D"


def _assert_zips_typed(response) -> None:
    """``response`` made the dataset ``zips`` with ``zip`` declared categorical."""
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["name"] == "zips"
    assert {c["name"]: c["type"] for c in body["columns"]} == {
        "zip": "categorical",
        "y": "categorical",
    }


def test_json_records_take_the_querys_column_types_and_name(client):
    records = [{"zip": 1, "y": "a"}, {"zip": 2, "y": "b"}]
    query = "?name=zips&" + _ZIP_QUERY
    response = client.post("/v1/datasets" + query, json={"records": records})
    _assert_zips_typed(response)
    named = client.post("/v1/datasets?name=query", json={"name": "body", "records": records})
    assert named.get_json()["name"] == "body"  # the body's name wins, as a form's does
    bad = client.post(
        "/v1/datasets?column_types=%7B%22nope%22%3A%22numeric%22%7D", json={"records": records}
    )
    assert bad.status_code == 400 and "column_types.nope" in bad.get_json()["errors"]


@pytest.mark.parametrize(
    "kwargs, status, field",
    [
        ({"data": b"", "content_type": "text/csv"}, 400, "file"),
        ({"data": b"a,b\n", "content_type": "text/csv"}, 400, "file"),
        ({"data": b"a,a\n1,2\n", "content_type": "text/csv"}, 400, "file"),
        ({"data": b"a\n\xff\n", "content_type": "text/csv"}, 400, "a"),  # line 2, column a
        ({"json": {"records": "x"}}, 400, "records"),
        ({"json": {"records": [{"a": 1}], "extra": 1}}, 400, "extra"),
        ({"data": "{nope", "content_type": "application/json"}, 400, "body"),
        ({"data": b"x", "content_type": "text/plain"}, 415, None),
        ({"data": {}, "content_type": "multipart/form-data"}, 400, "file"),
    ],
)
def test_bad_uploads_are_problems_and_store_nothing(client, kwargs, status, field):
    response = client.post("/v1/datasets", **kwargs)
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    if field:
        assert field in body["errors"]
    assert client.get("/v1/datasets").get_json() == []


@pytest.mark.parametrize("chunked", [False, True])
def test_an_upload_over_the_size_limit_is_413_and_stores_nothing(settings, chunked):
    app = create_app(dataclasses.replace(settings, max_upload_bytes=2000), publisher=None)
    client = app.test_client()
    body = mixed_csv()
    if chunked:  # no Content-Length: the limit is enforced while the body streams in
        response = client.post(
            "/v1/datasets",
            input_stream=io.BytesIO(body),
            content_type="text/csv",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
    else:
        response = client.post("/v1/datasets", data=body, content_type="text/csv")
    assert response.status_code == 413
    assert response.content_type == "application/problem+json"
    assert client.get("/v1/datasets").get_json() == []
    with app.extensions["trainserve"].database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(BlobPart)) == 0
    app.extensions["trainserve"].close()


def test_delete_then_404(client):
    dataset = client.post("/v1/datasets", data=mixed_csv(20), content_type="text/csv").get_json()
    assert client.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
    response = client.get(f"/v1/datasets/{dataset['id']}")
    assert response.status_code == 404 and response.content_type == "application/problem+json"
    assert client.delete(f"/v1/datasets/{dataset['id']}").status_code == 404


def _form(path, parts: list[tuple[str, str | bytes, str | None]], boundary: str) -> int:
    """A multipart body written to ``path``: (name, value, file name) parts in order."""
    with open(path, "wb") as out:
        for name, value, filename in parts:
            disposition = f'form-data; name="{name}"' + (
                f'; filename="{filename}"' if filename else ""
            )
            out.write(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode())
            if isinstance(value, str) and filename:
                with open(value, "rb") as source:
                    while block := source.read(1 << 20):
                        out.write(block)
            else:
                out.write(value.encode() if isinstance(value, str) else value)
            out.write(b"\r\n")
        out.write(f"--{boundary}--\r\n".encode())
        return out.tell()


def _post_form(client, path, boundary: str | None, query: str = ""):
    """``path`` as a streamed body: a form (with ``boundary``), else a CSV."""
    with open(path, "rb") as body:
        return client.post(
            "/v1/datasets" + query,
            input_stream=body,
            content_type=f"multipart/form-data; boundary={boundary}" if boundary else "text/csv",
            content_length=path.stat().st_size,
        )


def test_a_big_multipart_upload_is_parsed_as_it_arrives(client, tmp_path, monkeypatch):
    """No spool file, no whole file in memory; the fields after the file count."""
    import tracemalloc

    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from werkzeug.wrappers import Request

    from service.ml import ingest

    rows = 200_000
    rng = np.random.default_rng(0)
    table = pa.table({f"x{i}": rng.normal(size=rows).round(6) for i in range(20)})
    csv = tmp_path / "big.csv"
    pacsv.write_csv(table, csv)
    boundary = "b0undary"
    form = tmp_path / "form"
    _form(form, [("file", str(csv), "big.csv"), ("name", "after the file", None)], boundary)
    assert csv.stat().st_size > 30 * 1024**2

    def spooled(*args, **kwargs):
        raise AssertionError("a form's file part was spooled")

    monkeypatch.setattr(Request, "_get_file_stream", spooled)
    monkeypatch.setattr(ingest, "RECENT_BYTES", 1 << 20)  # the error window's bytes
    peaks = []
    for post in (
        lambda: _post_form(client, form, boundary),
        lambda: _post_form(client, csv, None),  # the same table as a CSV body
    ):
        tracemalloc.start()
        try:
            response = post()
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["n_rows"] == rows
    assert client.get("/v1/datasets").get_json()[-1]["name"] == "after the file"
    # Python's memory (storage's parts and parser blocks) as for a body read as a stream,
    # a few MB more at most: never the form's 37 MB.
    assert peaks[0] < peaks[1] + 8 * 1024**2, peaks


_CSV = b"zip,y\n1,a\n2,b\n"
_TYPES = '{"zip": "categorical"}'


@pytest.mark.parametrize(
    "parts, field, query",
    [
        ([("file", b"a,b\n1,2\n\xff,3\n", "t.csv"), ("name", "ok", None)], "a", ""),
        ([("file", b"a,b\n1,2\n1,inf\n", "t.csv")], "b", ""),
        ([("file", b"a,b\n1,2\n", "t.csv"), ("name", "bad\x01name", None)], "name", ""),
        ([("name", "no file", None)], "file", ""),
        # column_types in the form: checked as ?column_types= is, before the file only,
        # and not in both; any field the upload does not read is refused, not ignored.
        ([("column_types", "{zip", None), ("file", _CSV, "t.csv")], "column_types", ""),
        ([("column_types", '{"zip": "date"}', None), ("file", _CSV, "t.csv")], "column_types", ""),
        (
            [("column_types", '{"nope": "numeric"}', None), ("file", _CSV, "t.csv")],
            "column_types.nope",
            "",
        ),
        ([("file", _CSV, "t.csv"), ("column_types", _TYPES, None)], "column_types", ""),
        (
            [("column_types", _TYPES, None), ("file", _CSV, "t.csv")],
            "column_types",
            "?column_types=%7B%7D",
        ),
        ([("target", "y", None), ("file", _CSV, "t.csv")], "target", ""),
        ([("file", _CSV, "t.csv"), ("features", '["zip"]', None)], "features", ""),
        # A field or the file given twice is refused: which one was meant is unknown.
        (
            [("column_types", _TYPES, None), ("column_types", "{}", None), ("file", _CSV, "t.csv")],
            "column_types",
            "",
        ),
        ([("name", "a", None), ("file", _CSV, "t.csv"), ("name", "b", None)], "name", ""),
        ([("file", _CSV, "t.csv"), ("file", _CSV, "u.csv")], "file", ""),
    ],
)
def test_a_bad_multipart_upload_names_its_field_and_stores_nothing(
    client, app, tmp_path, parts, field, query
):
    form = tmp_path / "form"
    _form(form, parts, "xyz")
    response = _post_form(client, form, "xyz", query)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert field in response.get_json()["errors"]
    assert client.get("/v1/datasets").get_json() == []
    with app.extensions["trainserve"].database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(BlobPart)) == 0


@pytest.mark.parametrize("where", ["form", "query"])
def test_a_forms_column_types_types_its_file_as_the_query_does(client, tmp_path, where):
    form = tmp_path / "form"
    parts = [("file", _CSV, "zips.csv"), ("name", "zips", None)]
    if where == "form":
        parts.insert(0, ("column_types", _TYPES, None))
    _form(form, parts, "xyz")
    query = "?" + _ZIP_QUERY if where == "query" else ""
    response = _post_form(client, form, "xyz", query)
    _assert_zips_typed(response)


class _RawBody:
    """The server's raw body (service.server.RawBody) over bytes: read in pieces of at
    most ``piece``; ``cut`` bytes, then the client is gone (0, or ``error`` raised)."""

    def __init__(self, data: bytes, piece: int = 1000, cut: int | None = None, error=None):
        self.data, self.piece, self.error = data, piece, error
        self.cut = len(data) if cut is None else cut
        self.position, self.reads = 0, 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.position

    def readinto(self, buffer) -> int:
        self.reads += 1
        if self.position >= self.cut and self.error is not None:
            raise self.error
        end = min(self.cut, self.position + len(buffer), self.position + self.piece)
        got = end - self.position
        memoryview(buffer)[:got] = self.data[self.position : end]
        self.position = end
        return got


def test_an_upload_is_read_through_the_servers_raw_body_when_it_offers_one(client):
    body = mixed_csv()
    raw = _RawBody(body)
    response = client.post(
        "/v1/datasets?name=raw",
        data=b"",  # werkzeug's stream is not read: the raw body is
        content_type="text/csv",
        headers={"Content-Length": str(len(body))},
        environ_overrides={"trainserve.raw_body": raw},
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["n_rows"] == 300
    assert raw.remaining == 0 and raw.reads >= len(body) // 1000


@pytest.mark.parametrize("error", [None, TimeoutError("timed out"), ConnectionResetError()])
def test_an_upload_whose_client_goes_away_is_a_400_and_stores_nothing(app, client, error):
    """As on werkzeug's stream: the body ends before its Content-Length (or the socket
    fails) → ClientDisconnected, and nothing is stored."""
    body = mixed_csv(3000)
    response = client.post(
        "/v1/datasets?name=cut",
        data=b"",
        content_type="text/csv",
        headers={"Content-Length": str(len(body))},
        environ_overrides={"trainserve.raw_body": _RawBody(body, 4096, len(body) // 2, error)},
    )
    assert response.status_code == 400
    assert client.get("/v1/datasets").get_json() == []
    with app.extensions["trainserve"].database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(BlobPart)) == 0


def test_a_content_length_over_the_limit_is_413_before_the_raw_body_is_read(settings):
    app = create_app(dataclasses.replace(settings, max_upload_bytes=2000), publisher=None)
    body = mixed_csv()
    raw = _RawBody(body)
    response = app.test_client().post(
        "/v1/datasets",
        data=body,
        content_type="text/csv",
        environ_overrides={"trainserve.raw_body": raw},
    )
    assert response.status_code == 413 and raw.reads == 0
    app.extensions["trainserve"].close()
