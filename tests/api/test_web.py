"""The dashboard's files, /docs served offline, and /metrics (in one process; the
multiprocess sum is tests/integration/test_dashboard.py's)."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import urlsplit

from service.app import create_app
from service.db.session import Database
from tests.support.training import train_model


def fetch(client, url: str, **kwargs):
    """GET ``url`` and close the response (a served file stays open until then)."""
    response = client.get(url, **kwargs)
    response.get_data()
    response.close()
    return response


def references(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


STATIC = Path(__file__).resolve().parents[2] / "service" / "web" / "static"


def test_the_root_leads_to_the_dashboard_whose_files_are_all_local(client):
    assert client.get("/").headers["Location"] == "/ui"
    page = fetch(client, "/ui")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    html = page.get_data(as_text=True)
    assert "<title>trainserve dashboard</title>" in html
    assets = [url for url in references(html) if url.startswith("/ui/")]
    assert sorted(assets) == ["/ui/dashboard.css", "/ui/js/app.js"]
    for url in references(html):
        assert url.startswith("data:") or not urlsplit(url).netloc, url  # no CDN, no other host
    script = fetch(client, "/ui/js/app.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert script.headers["Content-Security-Policy"] == policy
    assert fetch(client, "/ui/dashboard.css").mimetype == "text/css"
    for url in (
        "/ui/secrets.txt",
        "/ui/../web/dashboard.py",
        "/ui/js/nothing.js",
        "/ui/__init__.py",
    ):
        assert client.get(url).status_code == 404, url


def modules() -> dict[str, str]:
    """Every script module of the dashboard, by its path under /ui/."""
    return {
        path.relative_to(STATIC).as_posix(): path.read_text()
        for path in sorted(STATIC.rglob("*.js"))
    }


def test_every_module_the_dashboard_imports_is_served(client):
    for name, source in modules().items():
        for target in re.findall(r'^import .*? from "([^"]+)";', source, re.M):
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            assert resolved in modules(), (name, target)
            assert fetch(client, f"/ui/{resolved}").status_code == 200


def test_the_dashboard_writes_values_as_text_and_calls_only_the_v1_api():
    """No markup is ever built from strings (the CSP forbids inline script, and values from
    the API are data), no other host is called, and nothing is evaluated."""
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
        r"setAttribute\(\s*[\"']style|https?://(?!www\.w3\.org/2000/svg)"
    )
    for name, source in modules().items():
        assert not forbidden.search(source), (name, forbidden.search(source).group(0))
        for path in re.findall(r'(?:api|send|follow)\(\s*[`"](/[^`"$?]*)', source):
            assert path.startswith(("/v1/", "/openapi.json")), (name, path)


def test_docs_reference_no_other_host_and_every_asset_answers(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "cdn" not in html.lower()
    urls = references(html)
    assert {u.rsplit("/", 1)[-1] for u in urls} == {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
    }
    for url in urls:
        assert not urlsplit(url).netloc and url.startswith("/docs/assets/"), url
        asset = fetch(client, url)
        assert asset.status_code == 200 and len(asset.data) > 1000, url
    assert '"/openapi.json"' in html
    assert client.get("/docs/assets/index.html").status_code == 404  # only the three files


def test_pages_and_metrics_need_no_key_but_the_api_still_does(secured):
    client = secured.test_client()
    for url in ("/", "/ui", "/ui/js/app.js", "/docs", "/docs/assets/swagger-ui.css", "/metrics"):
        assert fetch(client, url).status_code in (200, 302), url
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/v1/models").status_code == 401


def samples(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.get_data(as_text=True)
    return {
        name: float(value)
        for name, value in re.findall(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)
    }


def test_metrics_count_jobs_epochs_predictions_and_cache_use(app, client, monkeypatch):
    from service.metrics import DatabaseCollector

    monkeypatch.setattr(DatabaseCollector, "REFRESH_SECONDS", 0.0)
    # The instruments are this process's: measure what the requests below add.
    before = samples(client)
    assert before["trainserve_database_up"] == 1
    assert before['trainserve_jobs{status="queued"}'] == 0
    assert before["trainserve_epoch_duration_seconds_count"] == 0

    train_model(app, hyperparameters={"epochs": 3})
    record = {"x1": 1.0, "x2": 0.5, "colour": "red", "flag": True}
    for _ in range(3):
        assert client.post("/v1/models/iris/predict", json={"records": [record]}).status_code == 200
    assert (
        client.post("/v1/models/iris/versions/1/predict", json={"records": []}).status_code == 400
    )
    after = samples(client)

    def added(name: str) -> float:
        return after[name] - before.get(name, 0.0)

    assert after['trainserve_jobs{status="succeeded"}'] == 1
    assert after["trainserve_queue_depth"] == after['trainserve_jobs{status="queued"}']
    assert after["trainserve_epoch_duration_seconds_count"] == 3
    assert after['trainserve_epoch_duration_seconds_bucket{le="+Inf"}'] == 3
    assert after["trainserve_epoch_duration_seconds_sum"] > 0
    assert added('trainserve_predict_duration_seconds_count{endpoint="predict"}') == 3
    assert added('trainserve_predict_duration_seconds_count{endpoint="predict_version"}') == 1
    assert added("trainserve_model_cache_misses_total") == 1  # loaded once
    assert added("trainserve_model_cache_hits_total") == 2
    buckets = [
        value
        for name, value in after.items()
        if name.startswith('trainserve_predict_duration_seconds_bucket{endpoint="predict",')
    ]
    assert buckets == sorted(buckets)  # cumulative


def test_metrics_read_the_database_at_most_once_per_refresh_interval(app, client, monkeypatch):
    """/metrics is public: asking it in a loop must not become a loop of table scans."""
    from service.metrics import DatabaseCollector

    monkeypatch.setattr(DatabaseCollector, "REFRESH_SECONDS", 60.0)
    assert samples(client)['trainserve_jobs{status="succeeded"}'] == 0
    train_model(app, hyperparameters={"epochs": 1})
    assert samples(client)['trainserve_jobs{status="succeeded"}'] == 0  # the reading is kept
    monkeypatch.setattr(DatabaseCollector, "REFRESH_SECONDS", 0.0)
    assert samples(client)['trainserve_jobs{status="succeeded"}'] == 1


def test_metrics_still_answer_when_the_database_does_not(settings, publisher, tmp_path):
    app = create_app(settings, publisher=publisher)
    try:
        app.extensions["trainserve"].database.close()
        app.extensions["trainserve"].database = Database(f"sqlite:///{tmp_path}/no/such/dir.db")
        down = samples(app.test_client())
    finally:
        app.extensions["trainserve"].close()
    assert down["trainserve_database_up"] == 0
    assert "trainserve_jobs" not in " ".join(down)
