"""The dashboard in a real browser: Debian's headless Chromium drives every flow of /ui
against a live `trainserve up` (keys required), the way a person would, and keeps a
screenshot of each step under tests/artifacts/ (or $TRAINSERVE_ARTIFACTS_DIR):

- the key: asked for, a wrong one refused, a right one used;
- upload → train (a refused value shown at its field) → watch the curves grow → predict;
- cancel a running job;
- sweep → live leaderboard → promote the winner to champion;
- compare versions; move an alias from the version table;
- score a file (predictions to download) and a labelled one (the evaluation too);
- keyboard only; 390 px wide; a key that may only predict (scopes).

One service and one browser tab serve the whole module (small tables, few epochs), and
every test ends with no script error, console error or CSP report in the page.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.integration.browser import Page, run_chromium
from tests.integration.conftest import ROOT, running_service
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration

FLOWERS = ROOT / "examples" / "flowers.csv"
LIVE_EPOCHS = 12


def artifacts_dir() -> Path:
    path = Path(os.environ.get("TRAINSERVE_ARTIFACTS_DIR") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Live:
    base: str
    key: str
    home: Path
    tmp: Path

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)


def create_key(home: Path, tenant: str, *args: str) -> str:
    created = subprocess.run(
        [sys.executable, "-m", "service.cli", "keys", "create", "--tenant", tenant, *args]
        + ["--home", str(home)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return created.stdout.strip().splitlines()[-1]


def plants_csv(path: Path, rows: int) -> Path:
    """A three-class table with numeric, categorical (some missing) and boolean columns,
    big enough that an epoch takes a moment, so the curves can be seen growing."""
    rng = random.Random(7)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["height", "width", "soil", "watered", "grade"])
        for i in range(rows):
            height, width = rng.gauss(0, 1), rng.gauss(0, 1)
            soil = rng.choice(["clay", "sand", "loam"])
            watered = rng.random() < 0.5
            score = height + 0.8 * width + 0.7 * (soil == "clay") - 0.4 * watered
            score += rng.gauss(0, 0.5)
            grade = "low" if score < -0.5 else "mid" if score < 0.7 else "high"
            writer.writerow(
                [f"{height:.3f}", f"{width:.3f}" if i % 41 else "", soil if i % 23 else ""]
                + ["true" if watered else "false", grade]
            )
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """`trainserve up` with keys required, and a key with every right."""
    tmp = tmp_path_factory.mktemp("dashboard")
    home = tmp / "home"
    with running_service(home, tmp / "up.log", {"TRAINSERVE_AUTH": "required"}) as (port, _):
        yield Live(f"http://127.0.0.1:{port}", create_key(home, "acme"), home, tmp)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """One Chromium tab for the module: the key entered once stays in its sessionStorage."""
    page = Page(tmp_path_factory.mktemp("chromium"))
    yield page
    page.close()


@pytest.fixture(autouse=True)
def no_page_problems(page):
    """No test may leave a script error, console error or CSP report in the page. (The
    browser also logs every 4xx answer as a failed resource; those are expected here.)"""
    page.problems.clear()
    yield
    problems = [p for p in page.problems if not re.search(r"status of 4\d\d|net::ERR_ABORTED", p)]
    assert problems == []


# ---- helpers --------------------------------------------------------------------


def shot(page: Page, name: str, width: int = 1280) -> Path:
    path = artifacts_dir() / f"dashboard-{name}.png"
    data = page.screenshot(path, width=width)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    page.resize(1280)
    return path


def go(page: Page, live: Live, route: str, ready: str) -> None:
    """Open ``#route`` and wait until ``ready`` (a CSS selector) is in the page."""
    page.goto(f"{live.base}/ui#{route}")
    page.wait_for(f"!!document.querySelector({json.dumps(ready)})", timeout=30)


def set_value(page: Page, selector: str, value: str) -> None:
    """Type a value into a field as a person would (input and change events)."""
    page.wait_for(f"!!document.querySelector({json.dumps(selector)})")
    page.js(
        f"(() => {{ const i = document.querySelector({json.dumps(selector)});"
        f" i.value = {json.dumps(value)};"
        " i.dispatchEvent(new Event('input', {bubbles: true}));"
        " i.dispatchEvent(new Event('change', {bubbles: true})); })()"
    )


def text(page: Page, selector: str) -> str:
    return page.js(f"document.querySelector({json.dumps(selector)})?.textContent ?? ''")


def texts(page: Page, selector: str) -> list[str]:
    return page.js(
        f"[...document.querySelectorAll({json.dumps(selector)})].map(n => n.textContent.trim())"
    )


def confirm_dialog(page: Page) -> str:
    """Wait for the confirmation dialog; its words."""
    page.wait_for("document.querySelector('#confirm-dialog').open")
    return text(page, "#confirm-dialog")


def wait_after_action(page: Page, condition: str, timeout: float = 60):
    """wait_for after a click that calls the API; on a timeout, what the page shows."""
    try:
        return page.wait_for(condition, timeout=timeout)
    except AssertionError as exc:
        state = page.js(
            "JSON.stringify({dialog: document.querySelector('#confirm-dialog').open"
            " && document.querySelector('#confirm-dialog').textContent.trim(),"
            " notice: document.querySelector('#notice').textContent,"
            " hash: location.hash,"
            " view: document.querySelector('#view').textContent.slice(0, 800)})"
        )
        raise AssertionError(f"{exc}; the page: {state}; problems: {page.problems}") from None


def route(page: Page) -> str:
    return page.js("location.hash")


def upload_flowers(live: Live, name: str) -> dict:
    with open(FLOWERS, "rb") as data:
        response = live.api(
            "POST", f"/v1/datasets?name={name}", data=data, headers={"Content-Type": "text/csv"}
        )
    assert response.status_code == 201, response.text
    return response.json()


# ---- the flows ----------------------------------------------------------------------


def test_the_dashboard_asks_for_a_key_refuses_a_wrong_one_and_uses_a_right_one(live, page):
    page.goto(f"{live.base}/ui#/datasets")
    page.wait_for("document.querySelector('#key-dialog').open")
    assert "needs an API key" in text(page, "#key-reason")
    set_value(page, "#key-input", "ts_not-a-key")
    page.js("document.querySelector('#key-form').requestSubmit()")
    page.wait_for(
        "document.querySelector('#key-dialog').open"
        " && document.querySelector('#key-reason').textContent.includes('refused')"
    )

    set_value(page, "#key-input", live.key)
    page.js("document.querySelector('#key-form').requestSubmit()")
    page.wait_for(
        "!document.querySelector('#key-dialog').open && document.querySelector('.dropzone')"
    )
    assert page.js("document.querySelector('#notice').hidden") is True  # the refusal is gone
    assert page.js("sessionStorage.getItem('trainserve.apiKey')") == live.key
    assert page.js("localStorage.length") == 0
    page.wait_for("document.querySelector('#view').textContent.includes('No datasets yet')")


def test_upload_train_watch_and_predict(live, page):
    data = plants_csv(live.tmp / "plants.csv", 2500)
    go(page, live, "/datasets", "#upload-file")
    # Slowed down to a few seconds, so the progress can be seen (and photographed).
    page.throttle_uploads(data.stat().st_size / 4)
    try:
        page.set_files("#upload-file", data)
        page.wait_for("document.querySelector('.upload-status progress')?.value > 0.1")
        words = text(page, ".progress-words")
        assert re.search(r"KiB of \d+\.\d KiB · .*/s · about \d+ s left", words), words
        shot(page, "00-upload-progress")
    finally:
        page.throttle_uploads(None)
    # The upload ends on the dataset's own page: every column with its type and missing count.
    page.wait_for(
        "location.hash.startsWith('#/datasets/') && document.querySelector('tr[data-column]')"
    )
    columns = page.js(
        "Object.fromEntries([...document.querySelectorAll('tr[data-column]')]"
        ".map(tr => [tr.dataset.column, [...tr.children].map(td => td.textContent)]))"
    )
    assert set(columns) == {"height", "width", "soil", "watered", "grade"}
    assert columns["soil"][1] == "categorical" and columns["watered"][1] == "boolean"
    assert columns["width"][2].startswith("61 ")  # every 41st row of 2500 is empty
    assert "2,500 rows" in text(page, ".facts-line")
    # The upload's statistics: the categories with their counts, a numeric summary.
    soil = page.js(
        "[...document.querySelectorAll('tr[data-column=soil] .chip')].map(c => c.textContent)"
    )
    assert len(soil) == 3 and all(re.fullmatch(r"(clay|sand|loam) · [\d,]+", c) for c in soil), soil
    assert re.search(r"min -?\d.*mean -?\d.*max \d", text(page, "tr[data-column=height] .stats"))
    shot(page, "01-dataset")

    # Train: the form comes from the OpenAPI schema, the target is guessed from the columns.
    page.click('a[href^="#/train?dataset="]')
    page.wait_for("document.querySelector('#train-form')")
    assert page.js("document.querySelector('#train-target').value") == "grade"
    knobs = page.js(
        "[...document.querySelectorAll('.knobs [data-field]')].map(f => f.dataset.field)"
    )
    schema = requests.get(f"{live.base}/openapi.json", timeout=10).json()
    expected = list(schema["components"]["schemas"]["Hyperparameters"]["properties"])
    assert knobs == [f"hyperparameters.{name}" for name in expected]  # every knob, in order
    default = schema["components"]["schemas"]["Hyperparameters"]["properties"]["epochs"]["default"]
    shown = page.js("document.querySelector('[name=\"hyperparameters.epochs\"]').value")
    assert shown == ("" if default is None else str(default))  # null: an empty field
    # A value the API refuses is shown next to its field, and nothing starts.
    set_value(page, '[name="hyperparameters.epochs"]', "0")
    set_value(page, '[name="hyperparameters.hidden_layers"]', "32, -4")
    page.js("document.querySelector('#train-form').requestSubmit()")
    page.wait_for(
        "!!document.querySelector("
        "'[data-field=\"hyperparameters.epochs\"] .field-error:not([hidden])')"
    )
    epochs_error = text(page, '[data-field="hyperparameters.epochs"] .field-error')
    layers_error = text(page, '[data-field="hyperparameters.hidden_layers"] .field-error')
    assert "1" in epochs_error, epochs_error
    assert layers_error.startswith("item 2: "), layers_error  # the item the API named
    assert page.js("document.activeElement.name") in (
        "hyperparameters.epochs",
        "hyperparameters.hidden_layers",
    )
    shot(page, "02-train-form-refused")
    assert live.api("GET", "/v1/jobs").json() == []

    set_value(page, '[name="hyperparameters.recipe"]', "plain")  # small and fast
    set_value(page, '[name="hyperparameters.epochs"]', str(LIVE_EPOCHS))
    set_value(page, '[name="hyperparameters.hidden_layers"]', "32, 32")
    # Batches of 4: ~500 steps an epoch, so that the job lasts a few of the watcher's
    # polls below; with 16 a fast machine ran all 12 epochs between two of them.
    set_value(page, '[name="hyperparameters.batch_size"]', "4")
    set_value(page, '[name="hyperparameters.learning_rate"]', "0.003")
    set_value(page, '[name="hyperparameters.early_stopping_patience"]', "")  # off
    set_value(page, '[name="hyperparameters.seed"]', "3")
    page.js("document.querySelector('#train-form').requestSubmit()")
    page.wait_for("location.hash.startsWith('#/jobs/')")
    job_id = route(page).split("/")[-1]
    job = live.api("GET", f"/v1/jobs/{job_id}").json()
    assert job["hyperparameters"]["early_stopping_patience"] is None
    assert job["hyperparameters"]["hidden_layers"] == [32, 32] and job["target"] == "grade"

    # Watch: the curves grow as the event stream delivers epochs.
    seen = []
    taken = False
    deadline = time.monotonic() + 300  # honest headroom on a loaded machine
    while time.monotonic() < deadline:
        # One evaluation, so one state of the page: the chart is drawn at the next frame,
        # while the status event hides the live mark at once, so a job that ends between
        # two separate reads showed a chart of fewer points than epochs and no live mark.
        state = page.js(
            "({points: Number(document.querySelector('svg.loss path[data-series=\"train_loss\"]')"
            "?.dataset.points ?? 0), live: !document.querySelector('.live').hidden,"
            " mark: document.querySelector('.live').textContent,"
            " ended: /succeeded|failed|cancelled/.test(document.querySelector('h1').textContent)})"
        )
        points = state["points"]
        if not seen or seen[-1] != points:
            seen.append(points)
        if 4 <= points < LIVE_EPOCHS and not state["ended"] and not taken:
            assert state["live"] and "live" in state["mark"], state
            shot(page, "03-job-live")
            taken = True
        if "succeeded" in text(page, "h1"):
            break
        time.sleep(0.1)
    assert "succeeded" in text(page, "h1"), text(page, "#view")[:500]
    page.wait_for(
        "document.querySelector('svg.loss path[data-series=\"train_loss\"]')"
        f".dataset.points == {LIVE_EPOCHS}"
    )
    assert any(0 < n < LIVE_EPOCHS for n in seen), seen  # drawn before the job ended
    assert seen == sorted(seen)
    assert page.js("document.querySelector('.live').hidden") is True
    page.wait_for("document.querySelector('.callout.ok a.button.primary')")
    shot(page, "04-job-done")

    # Predict one row from the model's page, with a form made from its input schema.
    page.click(".callout.ok a.button.primary")
    page.wait_for("document.querySelector('#predict-form')")
    assert route(page) == "#/models/plants/1"
    set_value(page, "#predict-form input[type=number]", "2.5")
    page.js("document.querySelector('#predict-form').requestSubmit()")
    label = page.wait_for("document.querySelector('.predicted-label')?.textContent")
    assert label in ("low", "mid", "high")
    shares = page.js(
        "[...document.querySelectorAll('.probabilities .share-bar')]"
        ".map(b => Number(b.dataset.share))"
    )
    assert len(shares) == 3 and abs(sum(shares) - 1) < 1e-3
    shot(page, "05-predict")


def test_a_dataset_in_use_is_not_deleted_then_the_job_is_cancelled_and_it_is(live, page):
    # A compressed file goes up as it is, with Content-Encoding: gzip.
    packed = live.tmp / "flowers-cancel.csv.gz"
    packed.write_bytes(gzip.compress(FLOWERS.read_bytes()))
    go(page, live, "/datasets", "#upload-file")
    page.set_files("#upload-file", packed)
    page.wait_for(
        "location.hash.startsWith('#/datasets/') && !!document.querySelector('tr[data-column]')"
    )
    assert text(page, "h1") == "flowers-cancel" and "150 rows" in text(page, ".facts-line")
    dataset = {"id": route(page).split("/")[-1]}
    job = live.api(
        "POST",
        "/v1/jobs",
        json={
            "dataset_id": dataset["id"],
            "target": "species",
            "model_name": "flowers-cancel",
            "hyperparameters": {
                "epochs": 1000,
                "batch_size": 1,
                "early_stopping_patience": None,
                "recipe": "plain",
            },
        },
    ).json()
    # Delete while a job uses it: the 409 is explained, with the job that holds it.
    go(page, live, f"/datasets/{dataset['id']}", "tr[data-column]")
    page.click("#view .page-head button.danger")
    assert "Delete the dataset" in confirm_dialog(page)
    page.click("#confirm-ok")
    page.wait_for("!!document.querySelector('.explain li a')")
    explanation = text(page, ".explain")
    assert "Not deleted: a job still uses this dataset" in explanation and "409" in explanation
    assert page.js("document.querySelector('.explain li a').getAttribute('href')") == (
        f"#/jobs/{job['id']}"
    )
    shot(page, "06-delete-refused")
    assert live.api("GET", f"/v1/datasets/{dataset['id']}").status_code == 200

    # Cancel the job from its page (the link in the explanation leads there).
    page.click(".explain li a")
    page.wait_for(
        "document.querySelector('h1').textContent.includes('running')"
        " && !document.querySelector('#view .page-head button.danger').hidden",
        timeout=120,
    )
    page.click("#view .page-head button.danger")
    assert "Cancel this job?" in confirm_dialog(page)
    page.click("#confirm-ok")
    page.wait_for("document.querySelector('h1').textContent.includes('cancelled')", timeout=60)
    assert live.api("GET", f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    assert "no model version" in text(page, ".outcome")

    # Now nothing holds the dataset: it goes.
    go(page, live, f"/datasets/{dataset['id']}", "tr[data-column]")
    page.click("#view .page-head button.danger")
    confirm_dialog(page)
    page.click("#confirm-ok")
    page.wait_for("location.hash === '#/datasets'")
    assert live.api("GET", f"/v1/datasets/{dataset['id']}").status_code == 404


def drop_file(page: Page, selector: str, path: Path, media_type: str = "text/csv") -> None:
    """Drag a file onto ``selector`` and drop it there (a DataTransfer with a File)."""
    page.wait_for(f"!!document.querySelector({json.dumps(selector)})")
    page.js(
        "(() => { const data = new DataTransfer();"
        f" data.items.add(new File([{json.dumps(path.read_text())}], {json.dumps(path.name)},"
        f" {{type: {json.dumps(media_type)}}}));"
        f" const zone = document.querySelector({json.dumps(selector)});"
        " for (const type of ['dragenter', 'dragover', 'drop'])"
        "   zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true,"
        " cancelable: true})); })()"
    )


def test_sweep_leaderboard_and_promote_the_winner(live, page):
    # This dataset comes by drag and drop.
    go(page, live, "/datasets", ".dropzone")
    drop_file(page, ".upload .dropzone", FLOWERS)
    page.wait_for(
        "location.hash.startsWith('#/datasets/') && !!document.querySelector('h1')"
        " && document.querySelector('h1').textContent === 'flowers'"
    )
    dataset = {"id": route(page).split("/")[-1]}
    go(page, live, f"/sweeps/new?dataset={dataset['id']}", "#sweep-form .search-row")
    assert page.js("document.querySelector('#train-target').value") == "species"
    # A random search draws from ranges; one the API refuses is shown at its row.
    page.click("input[type=radio][value=random]")
    set_value(page, ".search-row select[aria-label=Distribution]", "log_uniform")
    set_value(page, ".search-row input[aria-label=Low]", "0")
    set_value(page, ".search-row input[aria-label=High]", "0.1")
    assert "trials drawn from the ranges" in text(page, ".trial-count")
    page.js("document.querySelector('#sweep-form').requestSubmit()")
    page.wait_for("!!document.querySelector('.search-row.invalid')")
    assert "greater than 0" in text(page, ".search-row .field-error")
    assert route(page).startswith("#/sweeps/new")
    page.click("input[type=radio][value=grid]")
    # A grid of two learning rates × two activations; a median rule that can stop the slow one.
    set_value(page, ".search-row input[aria-label=Values]", "0.02, 0.0005")
    page.click("#add-search-row")
    set_value(page, ".search-row:nth-child(2) select[aria-label=Hyperparameter]", "activation")
    set_value(page, ".search-row:nth-child(2) input[aria-label=Values]", "relu, tanh")
    assert text(page, ".trial-count").startswith("4 trials")
    set_value(page, '[name="hyperparameters.recipe"]', "plain")
    set_value(page, '[name="hyperparameters.epochs"]', "8")
    set_value(page, '[name="hyperparameters.early_stopping_patience"]', "")
    set_value(page, '[name="hyperparameters.seed"]', "1")
    set_value(page, '[name="early_stopping.grace_epochs"]', "2")
    set_value(page, '[name="early_stopping.min_trials"]', "1")
    set_value(page, '[name="max_parallel"]', "1")
    shot(page, "07-sweep-form")
    page.js("document.querySelector('#sweep-form').requestSubmit()")
    page.wait_for(
        "location.hash.startsWith('#/sweeps/') && document.querySelector('table.leaderboard')"
    )
    sweep_id = route(page).split("/")[-1]
    page.wait_for(
        "document.querySelectorAll('svg.sweep-curves path.series').length >= 2", timeout=180
    )
    shot(page, "08-sweep-live")
    page.wait_for(
        "document.querySelector('h1').textContent.includes('succeeded')"
        " && document.querySelector('#promote-winner')",
        timeout=300,
    )
    sweep = live.api("GET", f"/v1/sweeps/{sweep_id}").json()

    # The leaderboard is the API's, best first; early-stopped trials say at which epoch.
    rows = page.js(
        "[...document.querySelectorAll('table.leaderboard tbody tr')].map(tr => tr.dataset.trial)"
    )
    assert rows == [str(t["trial"]) for t in sweep["leaderboard"]]
    for trial in sweep["leaderboard"]:
        row = f'table.leaderboard tr[data-trial="{trial["trial"]}"]'
        if trial["stopped_early"]:
            assert f"stopped early at epoch {trial['stopped_at_epoch']}" in text(page, row)
        else:
            assert "stopped early" not in text(page, row)
    stopped = [t for t in sweep["leaderboard"] if t["stopped_early"]]
    assert len(page.js("[...document.querySelectorAll('svg.sweep-curves path.stop-mark')]")) == len(
        stopped
    )
    assert page.js("document.querySelectorAll('svg.sweep-curves path.series').length") == 4
    scored = [t for t in sweep["leaderboard"] if t["value"] is not None]
    assert page.js("document.querySelectorAll('svg.scatter circle').length") == len(scored)
    winner = sweep["winner"]["model"]["version"]
    assert f"flowers v{winner}" in text(page, ".winner")
    shot(page, "09-sweep-done")

    page.click("#promote-winner")
    words = confirm_dialog(page)
    assert f"version {winner}" in words and "champion" in words
    page.click("#confirm-ok")
    page.wait_for(
        "!document.querySelector('#promote-winner')"
        " && document.querySelector('.winner .alias.champion')"
    )
    alias = live.api("GET", "/v1/models/flowers/aliases/champion").json()
    assert alias["version"] == winner
    shot(page, "10-sweep-promoted")
    shot(page, "10-sweep-promoted-390", width=390)


def test_compare_versions(live, page):
    versions = [v["version"] for v in live.api("GET", "/v1/models/flowers").json()["versions"]]
    assert len(versions) >= 3
    chosen = sorted(versions)[:3]
    go(page, live, "/models/flowers", "tr[data-version]")
    assert page.js("document.querySelector('#compare-selected').disabled") is True
    for v in chosen:
        page.click(f'tr[data-version="{v}"] input[type=checkbox]')
    page.click("#compare-selected")
    page.wait_for("document.querySelector('#compare-metrics')")
    assert route(page) == f"#/models/flowers/compare?versions={','.join(map(str, chosen))}"
    comparison = live.api(
        "GET", f"/v1/models/flowers/compare?versions={','.join(map(str, chosen))}"
    ).json()
    assert page.js("document.querySelectorAll('svg.compare-loss path.series').length") == 3
    assert page.js("document.querySelectorAll('figure.matrix').length") == 3
    differing = page.js(
        "[...document.querySelectorAll('#compare-hyperparameters tr.differs')]"
        ".map(tr => tr.dataset.hyperparameter)"
    )
    assert sorted(differing) == sorted(comparison["differing_hyperparameters"])
    assert "learning_rate" in differing
    # The best version of each metric is marked in its row.
    best_cells = texts(page, "#compare-metrics td.best")
    assert best_cells and all(c.startswith("★") for c in best_cells)
    header = [h.split(" ")[0] for h in texts(page, "#compare-metrics thead th")[1:]]
    assert header == [f"v{v}" for v in chosen]
    loss_row = page.js(
        "[...[...document.querySelectorAll('#compare-metrics tbody tr')]"
        ".find(tr => tr.firstChild.textContent === 'Validation loss').querySelectorAll('td')]"
        ".map(td => td.classList.contains('best'))"
    )
    losses = {v["version"]: v["metrics"]["val_loss"] for v in comparison["versions"]}
    best = losses[comparison["best"]["val_loss"]]
    assert loss_row == [losses[v] == best for v in chosen] and any(loss_row)
    assert page.js("document.querySelectorAll('#compare-f1 tbody tr').length") == 3
    shot(page, "11-compare")


def test_move_champion_from_the_version_table(live, page):
    champion = live.api("GET", "/v1/models/flowers/aliases/champion").json()["version"]
    other = next(
        v["version"]
        for v in live.api("GET", "/v1/models/flowers").json()["versions"]
        if v["version"] != champion
    )
    go(page, live, "/models/flowers", "tr[data-version]")
    assert (
        page.js(
            f'document.querySelector(\'tr[data-version="{champion}"]'
            " [data-action=make-champion]').disabled"
        )
        is True
    )
    page.click(f'tr[data-version="{other}"] [data-action=make-champion]')
    words = confirm_dialog(page)
    assert f"points to version {champion} now. Move it to version {other}?" in words
    shot(page, "12-alias-confirm")
    # Cancelling changes nothing.
    page.click("#confirm-cancel")
    page.wait_for("!document.querySelector('#confirm-dialog').open")
    assert live.api("GET", "/v1/models/flowers/aliases/champion").json()["version"] == champion
    page.click(f'tr[data-version="{other}"] [data-action=make-champion]')
    confirm_dialog(page)
    page.click("#confirm-ok")
    wait_after_action(
        page, f"!!document.querySelector('tr[data-version=\"{other}\"] .alias.champion')"
    )
    assert live.api("GET", "/v1/models/flowers/aliases/champion").json()["version"] == other


def test_score_a_file(live, page):
    unlabelled = live.tmp / "to-score.csv"
    with open(FLOWERS) as source, open(unlabelled, "w", newline="") as out:
        rows = list(csv.DictReader(source))
        writer = csv.DictWriter(out, [c for c in rows[0] if c != "species"])
        writer.writeheader()
        writer.writerows({k: v for k, v in row.items() if k != "species"} for row in rows)
    go(page, live, "/models/flowers/1", "#score-file")
    page.set_files("#score-file", unlabelled)
    link = page.wait_for(
        "document.querySelector('.score-predictions a[download]')?.download", timeout=60
    )
    assert link == "to-score-predictions-flowers-v1.csv"
    # The download is the API's CSV answer, saved as a person's click saves it.
    downloads = live.tmp / "downloads"
    downloads.mkdir()
    page.allow_downloads(downloads)
    page.click(".score-predictions a[download]")
    saved = downloads / link
    wait_until(lambda: saved.is_file() and saved.stat().st_size > 0, 30, "the download")
    lines = saved.read_text().strip().splitlines()
    assert lines[0] == "label,p_setosa,p_versicolor,p_virginica" and len(lines) == 151
    assert page.js("document.querySelectorAll('.score-predictions tbody tr').length") == 8
    assert "nothing to evaluate against" in text(page, ".score-evaluation")
    shot(page, "13-score")

    # A labelled file: predictions (the target column set aside, and said so) and the
    # model's evaluation on it, with its reliability diagram.
    page.set_files("#score-file", FLOWERS)
    page.wait_for(
        "document.querySelector('.score-predictions a[download]')?.download"
        " === 'flowers-predictions-flowers-v1.csv'",
        timeout=60,
    )
    assert "ignored the column species" in text(page, ".score-predictions")
    page.wait_for("!!document.querySelector('.score-evaluation .evaluation')", timeout=60)
    evaluation = live.api(
        "POST",
        "/v1/models/flowers/versions/1/evaluate",
        data=FLOWERS.read_bytes(),
        headers={"Content-Type": "text/csv"},
    ).json()
    facts = dict(
        page.js(
            "[...document.querySelectorAll('.score-evaluation dl.facts div')]"
            ".map(d => [d.firstChild.textContent, d.lastChild.textContent])"
        )
    )
    assert facts["Rows"] == "150"
    assert facts["Accuracy"] == f"{100 * evaluation['accuracy']:.1f} %"
    cells = page.js(
        "[...document.querySelectorAll('.score-evaluation table.confusion tbody td')]"
        ".map(td => Number(td.textContent))"
    )
    assert cells == [n for row in evaluation["confusion_matrix"]["counts"] for n in row]
    bars = page.js("document.querySelectorAll('.score-evaluation svg.reliability rect.bar').length")
    assert bars == sum(1 for b in evaluation["reliability"] if b["count"])
    tallest = page.js(
        "Math.max(...[...document.querySelectorAll('.score-evaluation svg.reliability rect.bar')]"
        ".map(r => r.getBoundingClientRect().height))"
    )
    assert tallest > 60  # a bar reaches up to its bin's accuracy
    shot(page, "13-score-labelled")


def test_keyboard_only(live, page):
    go(page, live, "/jobs", "table")
    page.js("location.reload()")  # a fresh page: the keyboard starts at the top
    time.sleep(0.5)
    page.wait_for("!!document.querySelector('#view table')")
    page.press("Tab")
    assert page.js("document.activeElement.className") == "skip"
    order = []
    for _ in range(12):
        page.press("Tab")
        order.append(page.js("document.activeElement.textContent.trim()"))
        if order[-1] == "Models":
            break
    assert order[:6] == ["trainserve", "Datasets", "Train", "Jobs", "Sweeps", "Models"], order
    page.press("Enter")
    page.wait_for("location.hash === '#/models' && document.querySelector('tr[data-model]')")
    assert page.js("document.activeElement.tagName") == "H1"  # focus follows the page
    for _ in range(10):
        page.press("Tab")
        if page.js("document.activeElement.textContent") == "flowers":
            break
    page.press("Enter")
    page.wait_for(
        "location.hash === '#/models/flowers'"
        " && !!document.querySelector('[data-action=make-champion]:not([disabled])')"
    )
    for _ in range(60):
        page.press("Tab")
        if page.js("document.activeElement.dataset.action") == "make-champion":
            break
    page.press("Enter")
    confirm_dialog(page)
    assert page.js("document.activeElement.id") == "confirm-cancel"  # the safe choice first
    page.press("Escape")
    page.wait_for("!document.querySelector('#confirm-dialog').open")
    assert page.js("document.activeElement.dataset.action") == "make-champion"


def test_every_page_fits_390_pixels(live, page):
    dataset = live.api("GET", "/v1/datasets").json()[0]["id"]
    sweep = live.api("GET", "/v1/sweeps").json()[0]["id"]
    page.resize(390)
    try:
        for path, ready in [
            ("/datasets", "table"),
            (f"/datasets/{dataset}", "tr[data-column]"),
            ("/train", "#train-form"),
            ("/jobs", "table"),
            (f"/sweeps/{sweep}", "table.leaderboard"),
            ("/models/flowers", "tr[data-version]"),
            ("/models/flowers/compare?versions=1,2", "#compare-metrics"),
            ("/models/flowers/1", "#predict-form"),
        ]:
            go(page, live, path, ready)
            width = page.js("document.documentElement.scrollWidth")
            assert width <= 390, (path, width)
    finally:
        page.resize(1280)
    go(page, live, "/train", "#train-form")
    shot(page, "14-train-form-390", width=390)


def use_key(page: Page, key: str) -> None:
    """Enter ``key`` in the key dialog, as a person switching keys would."""
    page.click("#change-key")
    page.wait_for("document.querySelector('#key-dialog').open")
    set_value(page, "#key-input", key)
    page.js("document.querySelector('#key-form').requestSubmit()")
    page.wait_for("!document.querySelector('#key-dialog').open")


def test_a_key_that_may_only_predict_sees_what_it_may(live, page):
    predict_only = create_key(live.home, "acme", "--scope", "predict")
    page.goto(f"{live.base}/ui#/")
    page.wait_for("!!document.querySelector('#change-key')")
    use_key(page, predict_only)
    try:
        # The first page is refused (jobs need "read"); the 403 says what the key holds,
        # and the page goes where the key may: the models.
        page.wait_for("location.hash === '#/models' && !!document.querySelector('tr[data-model]')")
        nav = page.js(
            "[...document.querySelectorAll('#nav a')]"
            ".filter(a => !a.hidden).map(a => a.textContent)"
        )
        assert nav == ["Models"]
        assert "scopes: predict" in text(page, "#key-status")

        go(page, live, "/models/flowers", "tr[data-version]")
        buttons = page.js(
            "[...document.querySelectorAll('[data-action=make-champion]')]"
            ".map(b => [b.disabled, b.title])"
        )
        assert buttons and all(disabled for disabled, _ in buttons)
        assert all("admin" in title for _, title in buttons if title)
        assert page.js("[...document.querySelectorAll('td a.mono')].every(a => a.hidden)")  # jobs
        shot(page, "15-predict-key-390", width=390)

        go(page, live, "/models/flowers/1", "#predict-form")
        assert (
            page.js("document.querySelector('#predict-form button[type=submit]').disabled") is False
        )
        page.js("document.querySelector('#predict-form').requestSubmit()")
        assert page.wait_for("document.querySelector('.predicted-label')?.textContent") in (
            "setosa",
            "versicolor",
            "virginica",
        )
        assert page.js("document.querySelector('.page-head [data-scope=admin]')?.disabled") is True

        # A page it may not see says why, in words.
        go(page, live, "/datasets", ".error")
        assert "needs the “read” scope" in text(page, ".error")
    finally:
        use_key(page, live.key)
    page.wait_for("[...document.querySelectorAll('#nav a')].every(a => !a.hidden)")


def test_swagger_ui_renders_at_docs_without_any_other_host(live, tmp_path):
    dom = run_chromium(f"{live.base}/docs", tmp_path / "profile", "--dump-dom")
    paths = set(re.findall(r'data-path="([^"]+)"', dom))  # one per operation Swagger UI drew
    assert {"/v1/jobs", "/v1/jobs/{job_id}/metrics", "/metrics"} <= paths
