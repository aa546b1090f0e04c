"""/v1/datasets through the app factory."""

import dataclasses
import io

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
