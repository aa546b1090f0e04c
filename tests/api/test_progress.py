"""GET /v1/jobs/{id}/events (Server-Sent Events) and GET /v1/jobs/{id}/plot."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from service.app import create_app
from tests.support.training import train_model


def parse_sse(text: str) -> list[dict]:
    """The events of a text/event-stream body, as dicts of their fields (data parsed)."""
    events = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value
        if "event" in fields:
            events.append(fields)
    return events


@pytest.fixture
def trained(app):
    _, job = train_model(app, hyperparameters={"epochs": 4, "early_stopping_patience": None})
    return job["id"]


def test_a_finished_jobs_stream_sends_every_epoch_then_the_final_status_and_ends(app, trained):
    response = app.test_client().get(f"/v1/jobs/{trained}/events")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    text = response.get_data(as_text=True)
    assert text.startswith("retry: ")
    events = parse_sse(text)
    assert [(e["event"], e["id"]) for e in events] == [
        ("epoch", "1"),
        ("epoch", "2"),
        ("epoch", "3"),
        ("epoch", "4"),
        ("status", "4:succeeded"),
    ]
    metrics = app.test_client().get(f"/v1/jobs/{trained}/metrics").get_json()["epochs"]
    assert [e["data"] for e in events[:4]] == metrics
    final = events[-1]["data"]
    assert final["status"] == "succeeded" and final["model"] == {"name": "iris", "version": 1}
    assert final["epoch"] == final["epochs"] == 4


def test_last_event_id_resumes_without_repeats(app, trained):
    client = app.test_client()
    resumed = client.get(f"/v1/jobs/{trained}/events", headers={"Last-Event-ID": "2"})
    assert [e["id"] for e in parse_sse(resumed.get_data(as_text=True))] == ["3", "4", "4:succeeded"]
    # The query parameter does the same for clients that cannot set the header.
    query = client.get(f"/v1/jobs/{trained}/events?last_event_id=3")
    assert [e["id"] for e in parse_sse(query.get_data(as_text=True))] == ["4", "4:succeeded"]
    # After the final event there is nothing more: 204 tells an EventSource to stop.
    done = client.get(f"/v1/jobs/{trained}/events", headers={"Last-Event-ID": "4:succeeded"})
    assert done.status_code == 204 and done.get_data() == b""


def test_a_queued_job_streams_its_status_and_stops_after_the_maximum(settings, publisher, app):
    response = app.test_client().post(
        "/v1/datasets", data=b"a,y\n1,p\n2,q\n3,p\n4,q\n", content_type="text/csv"
    )
    job = app.test_client().post(
        "/v1/jobs",
        json={"dataset_id": response.get_json()["id"], "target": "y", "model_name": "m"},
    )
    # No worker runs here: the stream shows the queued job, then closes at its maximum.
    short = create_app(dataclasses.replace(settings, event_stream_seconds=0.5), publisher=publisher)
    try:
        reply = short.test_client().get(f"/v1/jobs/{job.get_json()['id']}/events")
        events = parse_sse(reply.get_data(as_text=True))
    finally:
        short.extensions["trainserve"].close()
    assert [(e["event"], e["id"], e["data"]["status"]) for e in events] == [
        ("status", "0:queued", "queued")
    ]


def test_another_tenants_job_is_404_for_events_and_plot(secured, tenants):
    acme, globex = tenants["acme"], tenants["globex"]
    _, job = train_model(secured, headers=acme)
    client = secured.test_client()
    for path in ("events", "plot"):
        assert client.get(f"/v1/jobs/{job['id']}/{path}", headers=acme).status_code == 200
        response = client.get(f"/v1/jobs/{job['id']}/{path}", headers=globex)
        assert response.status_code == 404
        assert response.content_type == "application/problem+json"


def test_the_plot_is_a_valid_svg_or_png(app, trained):
    from PIL import Image

    client = app.test_client()
    svg = client.get(f"/v1/jobs/{trained}/plot")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    text = svg.get_data(as_text=True)
    assert text.lstrip().startswith("<?xml") and "<svg" in text and text.rstrip().endswith("</svg>")
    png = client.get(f"/v1/jobs/{trained}/plot?format=png")
    assert png.status_code == 200 and png.mimetype == "image/png"
    image = Image.open(io.BytesIO(png.data))
    assert image.format == "PNG" and image.size == (1000, 420)
    # Two panels of curves: far more than one colour on the canvas.
    assert len(image.convert("RGB").getcolors(maxcolors=100_000)) > 50


def test_a_job_without_epochs_gives_an_image_that_says_so(app):
    dataset = app.test_client().post(
        "/v1/datasets", data=b"a,y\n1,p\n2,q\n3,p\n4,q\n", content_type="text/csv"
    )
    job = app.test_client().post(
        "/v1/jobs", json={"dataset_id": dataset.get_json()["id"], "target": "y", "model_name": "m"}
    )
    svg = app.test_client().get(f"/v1/jobs/{job.get_json()['id']}/plot")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    # matplotlib draws text as glyph paths and keeps the words in a comment beside them.
    assert "no finished epoch yet" in svg.get_data(as_text=True)


def test_unknown_job_is_404(client):
    for path in ("events", "plot"):
        response = client.get(f"/v1/jobs/nope/{path}")
        assert response.status_code == 404 and "no job" in response.get_json()["detail"]
