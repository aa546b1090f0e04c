"""service/api/models/fast_predict.py: the common JSON predict answered before Flask, with
the answer the Flask view gives; everything else answered by the Flask app."""

from __future__ import annotations

import dataclasses
import json

import pytest
from werkzeug.test import Client

from service import metrics
from service.api.models.fast_predict import FastPredict
from service.usecases import keys
from tests.support.training import train_model

ROWS = [{"x1": 1.0, "x2": 0.5, "colour": "red", "flag": True}, {"x1": -2.0, "colour": "blue"}]


@pytest.fixture
def served(secured):
    """The secured app with a model (two versions), its middleware, and keys."""
    db = secured.extensions["trainserve"].database
    made = {"all": keys.create_key(db, "acme")[1]}
    made["train"] = keys.create_key(db, "acme", "t", frozenset({"train"}))[1]
    headers = {"Authorization": f"Bearer {made['all']}"}
    train_model(secured, headers=headers)
    train_model(secured, headers=headers)
    middleware = secured.wsgi_app
    assert isinstance(middleware, FastPredict)
    return secured, middleware, made


def _call(app_or_wsgi, path, *, key=None, body=None, **kwargs):
    client = Client(app_or_wsgi)
    headers = kwargs.pop("headers", {})
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else kwargs.pop("data", b"")
    kwargs.setdefault("content_type", "application/json")
    return client.post(path, data=data, headers=headers, **kwargs)


def _flask_only(middleware):
    return middleware.app  # Flask's own wsgi_app, without the fast path in front


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/models/iris/predict", {"records": ROWS}),
        ("/v1/models/iris/versions/1/predict", {"records": ROWS[:1]}),
        # A labelled row: the target is set aside and X-Ignored-Columns says so.
        ("/v1/models/iris/predict", {"records": [{**ROWS[0], "species": "setosa"}]}),
    ],
    ids=["latest", "version", "labelled"],
)
def test_the_fast_answer_is_the_views_answer(served, monkeypatch, path, body):
    app, middleware, made = served
    flask_said = _call(_flask_only(middleware), path, key=made["all"], body=body)

    def no_flask(environ, start_response):
        raise AssertionError("the fast path handed the request to Flask")

    monkeypatch.setattr(middleware, "app", no_flask)
    fast_said = _call(app, path, key=made["all"], body=body)
    assert fast_said.status == flask_said.status == "200 OK"
    assert sorted(fast_said.headers.items()) == sorted(flask_said.headers.items())
    assert fast_said.get_data() == flask_said.get_data()
    if "species" in body["records"][0]:
        assert fast_said.headers["X-Ignored-Columns"] == "species"


def test_the_fast_path_counts_in_the_predict_timer(served):
    app, _, made = served
    timer = metrics.PREDICT_SECONDS.labels("predict_version")
    count = next(s.value for s in timer.collect()[0].samples if s.name.endswith("_count"))
    _call(app, "/v1/models/iris/versions/2/predict", key=made["all"], body={"records": ROWS})
    after = next(s.value for s in timer.collect()[0].samples if s.name.endswith("_count"))
    assert after == count + 1


@pytest.mark.parametrize(
    "who, path, kwargs, status",
    [
        ("nobody", "/v1/models/iris/predict", {"body": {"records": ROWS}}, 401),
        ("bad", "/v1/models/iris/predict", {"body": {"records": ROWS}}, 401),
        ("train", "/v1/models/iris/predict", {"body": {"records": ROWS}}, 403),
        ("all", "/v1/models/nope/predict", {"body": {"records": ROWS}}, 404),
        ("all", "/v1/models/iris/versions/9/predict", {"body": {"records": ROWS}}, 404),
        ("all", "/v1/models/iris/predict", {"body": {"records": []}}, 400),
        ("all", "/v1/models/iris/predict", {"body": {"records": [{"x1": "a" * 20_000}]}}, 400),
        ("all", "/v1/models/iris/predict", {"data": b'{"records": [1, '}, 400),
        ("all", "/v1/models/iris/predict", {"data": b"x1\n1\n", "content_type": "text/csv"}, 200),
        ("all", "/v1/models/iris/predict?x=1", {"body": {"records": ROWS}}, 200),
        ("all", "/v1/models/iris/predict", {"body": {"records": ROWS, "extra": 1}}, 400),
        ("all", "/v1/models/iris/predict", {"body": {"dataframe_records": ROWS}}, 200),
        (
            "all",
            "/v1/models/iris/predict",
            {"body": {"records": ROWS}, "headers": {"Accept": "text/csv"}},
            200,
        ),
    ],
    ids=[
        "no-key",
        "unknown-key",
        "no-predict-scope",
        "unknown-model",
        "unknown-version",
        "no-rows",
        "cell-too-long",
        "malformed-json",
        "csv-body",
        "query-string",
        "unknown-field",
        "mlflow-format",
        "csv-answer",
    ],
)
def test_everything_else_is_the_flask_apps_answer(served, who, path, kwargs, status):
    app, middleware, made = served
    key = {"nobody": None, "bad": "ts_not-a-key"}.get(who, made.get(who))
    ours = _call(app, path, key=key, **kwargs)
    flask_said = _call(_flask_only(middleware), path, key=key, **kwargs)
    assert ours.status_code == flask_said.status_code == status, ours.get_data()
    assert ours.get_data() == flask_said.get_data()
    if status >= 400:
        assert ours.content_type == "application/problem+json"


def test_more_rows_than_allowed_are_the_flask_apps_400(served, monkeypatch):
    app, middleware, made = served
    svc = app.extensions["trainserve"]
    monkeypatch.setattr(svc, "settings", dataclasses.replace(svc.settings, max_predict_rows=1))
    ours = _call(app, "/v1/models/iris/predict", key=made["all"], body={"records": ROWS})
    assert ours.status_code == 400 and "records" in ours.get_json()["errors"]
