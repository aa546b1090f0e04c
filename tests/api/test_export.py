"""GET /v1/models/{name}/versions/{v}/export: each format reproduces the service's predict."""

from __future__ import annotations

import io
import json
import sys
import zipfile

import numpy as np
import pytest
import torch
from safetensors.numpy import load as load_safetensors

from service.ml.preprocessing import FeatureEncoder
from service.ml.tabular import coerce_columns, frame_from_records
from tests.support.training import train_model

ROWS = [
    {"x1": 2.0, "x2": 1.0, "colour": "red", "flag": True},
    {"x1": -2.0, "x2": -1.0, "colour": "blue", "flag": False},
    {"x1": 0.3, "colour": "never-seen"},
    {"x2": 0.5, "flag": None},
    {},
]
EXPORT = "/v1/models/iris/versions/1/export"


@pytest.fixture
def trained(app):
    train_model(app, hyperparameters={"epochs": 5, "learning_rate": 0.01, "seed": 0})


@pytest.fixture
def service_probabilities(client, trained) -> np.ndarray:
    body = client.post("/v1/models/iris/versions/1/predict", json={"records": ROWS}).get_json()
    classes = body["classes"]
    return np.array([[p["probabilities"][c] for c in classes] for p in body["predictions"]])


def download(client, fmt: str | None) -> zipfile.ZipFile:
    response = client.get(EXPORT + (f"?format={fmt}" if fmt else ""))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/zip"
    expected = f"iris-v1-{fmt or 'safetensors'}.zip"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{expected}"'
    return zipfile.ZipFile(io.BytesIO(response.data))


def encoded_rows(archive: zipfile.ZipFile) -> np.ndarray:
    """ROWS through the exported preprocessing: the network's float32 input."""
    encoder = FeatureEncoder.from_json(json.loads(archive.read("preprocessing.json")))
    frame = frame_from_records(ROWS, max_rows=100, max_columns=100)
    return encoder.transform(coerce_columns(frame, encoder.types, field="records"))


def test_onnx_gives_the_services_probabilities(client, service_probabilities):
    import onnx
    import onnxruntime

    archive = download(client, "onnx")
    model_bytes = archive.read("model.onnx")
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    x = encoded_rows(archive)
    (probabilities,) = session.run(["probabilities"], {"features": x})
    np.testing.assert_allclose(probabilities, service_probabilities, atol=1e-5)
    (one,) = session.run(["probabilities"], {"features": x[:1]})  # the row axis is dynamic
    np.testing.assert_allclose(one, service_probabilities[:1], atol=1e-5)
    props = {p.key: p.value for p in onnx.load_from_string(model_bytes).metadata_props}
    assert json.loads(props["classes"]) == ["setosa", "versicolor", "virginica"]
    assert json.loads(props["preprocessing"]) == json.loads(archive.read("preprocessing.json"))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_gives_the_services_probabilities(client, service_probabilities):
    archive = download(client, "torchscript")
    network = torch.jit.load(io.BytesIO(archive.read("model.torchscript.pt")))
    with torch.inference_mode():
        probabilities = network(torch.from_numpy(encoded_rows(archive))).numpy()
    np.testing.assert_allclose(probabilities, service_probabilities, atol=1e-5)


def test_safetensors_bundle_reproduces_predictions_from_its_readme_alone(
    client, service_probabilities
):
    """Encode and run the network with numpy only, from the JSON and what the README says."""
    archive = download(client, None)
    assert set(archive.namelist()) == {
        "weights.safetensors",
        "model.json",
        "preprocessing.json",
        "README.md",
    }
    model = json.loads(archive.read("model.json"))
    assert model["preprocessing"] == json.loads(archive.read("preprocessing.json"))
    readme = archive.read("README.md").decode()
    for word in ("x1", "colour", "`red`", "median", "one-hot", "logits", "softmax", "setosa"):
        assert word in readme
    x = np.array([_encode(row, model["preprocessing"]["columns"]) for row in ROWS])
    weights = load_safetensors(archive.read("weights.safetensors"))
    assert model["architecture"]["activation"] == "relu" and not model["architecture"]["dropout"]
    layers = len(model["architecture"]["hidden_layers"]) + 1
    for i in range(layers):
        index = 2 * i  # Linear, ReLU, Linear, ReLU, ..., Linear
        x = x @ weights[f"{index}.weight"].T.astype(np.float64) + weights[f"{index}.bias"]
        if i < layers - 1:
            x = np.maximum(x, 0)
    logits = x - x.max(axis=1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, service_probabilities, atol=1e-5)


def _encode(row: dict, columns: list[dict]) -> list[float]:
    """One row as the README describes it (numbers and booleans here arrive as JSON)."""
    out: list[float] = []
    for column in columns:
        value = row.get(column["name"])
        if column["type"] == "numeric":
            x = column["median"] if value is None else float(value)
            out.append((x - column["mean"]) / column["std"])
        elif column["type"] == "boolean":
            out.append(column["fill"] if value is None else float(value))
        elif column["type"] == "categorical":
            slots = [0.0] * (len(column["categories"]) + 1)
            categories = column["categories"]
            slots[categories.index(value) if value in categories else -1] = 1.0
            out.extend(slots)
        if column["type"] in ("numeric", "boolean") and column["indicator"]:
            out.append(1.0 if value is None else 0.0)
    return out


def test_an_unknown_format_is_400_naming_format(client, trained):
    response = client.get(EXPORT + "?format=pickle")
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert "format" in response.get_json()["errors"]


def test_unknown_versions_are_404(client, trained):
    assert client.get("/v1/models/iris/versions/2/export").status_code == 404
    assert client.get("/v1/models/nope/versions/1/export").status_code == 404


def test_another_tenants_model_is_404(secured, tenants):
    acme, globex = tenants["acme"], tenants["globex"]
    train_model(secured, headers=acme)
    client = secured.test_client()
    assert client.get(EXPORT, headers=acme).status_code == 200
    response = client.get(EXPORT, headers=globex)
    assert response.status_code == 404 and response.content_type == "application/problem+json"


def test_onnx_without_the_extra_is_501(client, trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails as if not installed
    response = client.get(EXPORT + "?format=onnx")
    assert response.status_code == 501
    assert "pip install 'trainserve[onnx]'" in response.get_json()["detail"]
