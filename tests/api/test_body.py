"""``Blueprint.body``: one declaration reads and documents a request body, so the
OpenAPI document and what is parsed cannot drift apart."""

from __future__ import annotations

import io

import pytest
from flask import Flask, request
from flask.views import MethodView
from marshmallow import fields

from service.api.blueprint import Blueprint
from service.api.body import Body
from service.api.schemas import BaseSchema
from service.api.spec import Api
from service.errors import register_error_handlers


class ThingSchema(BaseSchema):
    name = fields.String(required=True)


def _app(**body_options) -> Flask:
    app = Flask("body-test")
    app.config.update(
        API_TITLE="t",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=1000,
    )
    blp = Blueprint("things", __name__, url_prefix="/things")
    seen: list[Body] = []
    streams: list = []

    @blp.route("")
    class Things(MethodView):
        @blp.body(ThingSchema, description="a thing", **body_options)
        @blp.response(200)
        def post(self, body: Body):
            seen.append(body)
            if body.media_type == "application/json" or body.data is not None:
                return {"data": body.data}
            if request.args.get("limit"):
                request.max_content_length = int(request.args["limit"])
            stream = body.stream
            streams.append(stream)
            answer = {"read": len(stream.read()), "filename": body.filename}
            if body.media_type == "multipart/form-data" and body.complete() is not None:
                answer["data"] = body.data  # a form's fields, after its file was read
            return answer

    api = Api(app)
    api.register_blueprint(blp)
    register_error_handlers(app)
    app.seen, app.streams = seen, streams
    return app


def test_json_is_loaded_by_the_schema_and_documented_with_it():
    app = _app()
    client = app.test_client()
    assert client.post("/things", json={"name": "a"}).get_json() == {"data": {"name": "a"}}
    bad = client.post("/things", json={"name": 1})
    assert bad.status_code == 400 and "name" in bad.get_json()["errors"]
    broken = client.post("/things", data=b"{", content_type="application/json")
    assert broken.status_code == 400 and "not valid JSON" in broken.get_json()["detail"]
    doc = client.get("/openapi.json").get_json()["paths"]["/things"]["post"]["requestBody"]
    assert doc == {
        "required": True,
        "description": "a thing",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}},
    }


def test_only_the_documented_media_types_are_read():
    app = _app(csv=True)
    client = app.test_client()
    doc = client.get("/openapi.json").get_json()["paths"]["/things"]["post"]["requestBody"]
    assert list(doc["content"]) == ["application/json", "text/csv"]
    refused = client.post("/things", data=b"<x/>", content_type="application/xml")
    assert refused.status_code == 415
    assert refused.get_json()["detail"].endswith("use one of application/json, text/csv")
    assert client.post("/things", data=b"{}").status_code == 415  # no Content-Type
    assert app.seen == []


def test_a_csv_body_is_a_stream_opened_when_the_view_reads_it():
    app = _app(csv=True)
    client = app.test_client()
    small = client.post("/things", data=b"a,b\n1,2\n", content_type="text/csv")
    assert small.get_json()["read"] == 8
    assert hasattr(app.streams[-1], "read")  # a stream, never the body as bytes
    big = b"a\n" + b"1\n" * 1000  # over MAX_CONTENT_LENGTH
    assert client.post("/things", data=big, content_type="text/csv").status_code == 413
    # A view may raise its limit before it opens the stream (batch predict does).
    raised = client.post("/things?limit=5000", data=big, content_type="text/csv")
    assert raised.status_code == 200 and raised.get_json()["read"] == len(big)


def test_a_form_gives_its_file_as_a_stream_and_can_be_loaded_by_the_schema():
    app = _app(multipart=True)
    client = app.test_client()
    sent = client.post("/things", data={"file": (io.BytesIO(b"x,y\n"), "t.csv")})
    assert sent.get_json() == {"read": 4, "filename": "t.csv"}
    assert app.seen[-1].media_type == "multipart/form-data"
    missing = client.post("/things", data={"other": "1"}, content_type="multipart/form-data")
    assert missing.status_code == 400 and list(missing.get_json()["errors"]) == ["file"]

    loaded = _app(multipart=True, form=lambda body: {"name": body.form["name"]})
    answer = loaded.test_client().post(
        "/things", data={"file": (io.BytesIO(b"x"), "t.csv"), "name": "n"}
    )
    assert answer.get_json() == {"read": 1, "filename": "t.csv", "data": {"name": "n"}}


@pytest.mark.parametrize("untyped_json", [False, True])
def test_json_without_a_content_type_only_where_asked(untyped_json):
    client = _app(untyped_json=untyped_json).test_client()
    answer = client.post("/things", data=b'{"name": "a"}')
    assert answer.status_code == (200 if untyped_json else 415)


def test_every_v1_body_reads_exactly_what_it_documents(client):
    """Each documented media type gets past the body check; any other is a 415 that
    names the documented ones."""
    paths = client.get("/openapi.json").get_json()["paths"]
    checked = 0
    for path, operations in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            if "requestBody" not in operation or "{alias}" in path:
                continue
            url = path.replace("{name}", "m").replace("{version}", "1")
            documented = list(operation["requestBody"]["content"])
            refused = client.open(url, method=method, data=b"x", content_type="image/png")
            assert refused.status_code == 415, (path, method)
            assert refused.get_json()["detail"].endswith(", ".join(documented)), path
            for media_type in documented:
                answer = client.open(url, method=method, data=b"x", content_type=media_type)
                assert answer.status_code != 415, (path, method, media_type)
            checked += 1
    assert checked >= 5


def test_a_body_stream_reads_what_werkzeug_reads_and_keeps_its_limits():
    """BodyStream reads into one reused buffer, through werkzeug's stream: the same bytes
    (each read its own, not a view of the buffer), the end at Content-Length, and a 413
    past the limit of a body without one."""
    from werkzeug.exceptions import RequestEntityTooLarge
    from werkzeug.wsgi import LimitedStream

    from service.api.body import BodyStream

    data = bytes(range(256)) * 40
    stream = BodyStream(LimitedStream(io.BytesIO(data + b"past the length"), len(data)))
    reads = []
    while chunk := stream.read(3000):
        reads.append(chunk)
    assert b"".join(reads) == data and [len(r) for r in reads] == [3000, 3000, 3000, 1240]
    assert reads[0] == data[:3000]  # not overwritten by the later reads
    assert BodyStream(LimitedStream(io.BytesIO(data), len(data))).read() == data

    unbounded = BodyStream(LimitedStream(io.BytesIO(data), 5000, is_max=True))
    assert unbounded.read(5000) == data[:5000]
    with pytest.raises(RequestEntityTooLarge):
        unbounded.read(10)
