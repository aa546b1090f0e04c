"""Real Open Inference Protocol clients, used as their documentation shows, against a live
``trainserve api``: NVIDIA's tritonclient (http and http.aio) and KServe's
InferenceRESTClient (in its own virtualenv, .venv/kserve: see constraints-kserve.txt).

Each covers health, server and model metadata, readiness and inference, with JSON and
binary tensors (FP32, FP64, INT*, BOOL, BYTES), binary and JSON outputs, and aliases as
versions; every answer is checked against /v1 predict of the same rows. (tritonclient
adds Inference-Header-Content-Length to the headers dict it is given, so each call gets a
copy.)
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from tests.integration.live_api import ROOT, LiveApi, prepare, running_api

ROWS = [
    {"x1": 2.0, "x2": 1.5, "colour": "red", "flag": True},
    {"x1": -1.0, "x2": -0.5, "colour": "blue", "flag": False},
    {"x1": 0.0, "x2": 3.0, "colour": "never-seen", "flag": True},
]


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveApi:
    home = tmp_path_factory.mktemp("oip")
    url, made = prepare(home)
    with running_api(home, url, ("--workers", "1")) as (port, log):
        yield LiveApi(f"http://127.0.0.1:{port}", port, url, made, log)


@pytest.fixture(scope="module")
def expected(live) -> dict:
    """/v1 predict of ROWS: labels and probabilities in the model's class order."""
    answer = requests.post(
        f"{live.url}/v1/models/iris/predict", json={"records": ROWS}, headers=live.headers()
    ).json()
    classes = [str(c) for c in answer["classes"]]
    return {
        "classes": classes,
        "labels": [p["label"] for p in answer["predictions"]],
        "probabilities": np.array(
            [[p["probabilities"][c] for c in classes] for p in answer["predictions"]],
            dtype=np.float32,
        ),
    }


def _inputs(module, numeric=("FP32", "FP64"), binary=True):
    x1 = module.InferInput("x1", [3], numeric[0])
    x1.set_data_from_numpy(
        np.array([r["x1"] for r in ROWS], dtype=_NUMPY[numeric[0]]), binary_data=binary
    )
    x2 = module.InferInput("x2", [3, 1], numeric[1])
    x2.set_data_from_numpy(
        np.array([[r["x2"]] for r in ROWS], dtype=_NUMPY[numeric[1]]), binary_data=binary
    )
    colour = module.InferInput("colour", [3], "BYTES")
    colour.set_data_from_numpy(
        np.array([r["colour"].encode() for r in ROWS], dtype=np.object_), binary_data=binary
    )
    flag = module.InferInput("flag", [3], "BOOL")
    flag.set_data_from_numpy(np.array([r["flag"] for r in ROWS]), binary_data=binary)
    return [x1, x2, colour, flag]


_NUMPY = {
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
}
INTEGER_ROWS = [{**r, "x1": float(i), "x2": float(i + 1)} for i, r in enumerate(ROWS)]


def _check(result, expected, outputs=("probabilities", "label")):
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities, expected["probabilities"], atol=1e-6)
    labels = result.as_numpy("label")
    assert [v.decode() if isinstance(v, bytes) else v for v in labels] == expected["labels"]
    response = result.get_response()
    assert response["model_name"] == "iris" and response["model_version"] == "1"
    assert [o["name"] for o in response["outputs"]] == list(outputs)


def test_tritonclient_http_health_and_metadata(live):
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{live.port}")
    headers = live.headers("predict")
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert server["name"] == "trainserve" and "binary_tensor_data" in server["extensions"]
    for version in ("", "1", "production"):  # an alias is a version
        meta = client.get_model_metadata("iris", model_version=version, headers=dict(headers))
        assert meta["name"] == "iris" and meta["versions"] == ["1"]
        assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
            "x1": "FP32",
            "x2": "FP32",
            "colour": "BYTES",
            "flag": "BOOL",
        }
        assert client.is_model_ready("iris", model_version=version, headers=dict(headers))
    assert not client.is_model_ready("nope", headers=dict(headers))
    with pytest.raises(InferenceServerException, match="no model"):
        client.get_model_metadata("nope", headers=dict(headers))
    client.close()


def test_tritonclient_http_infer_binary_and_json(live, expected):
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{live.port}")
    headers = live.headers("predict")
    # The defaults: binary inputs, and (no outputs named) every output in binary.
    _check(client.infer("iris", _inputs(httpclient), headers=dict(headers)), expected)
    # JSON inputs: the body goes without a Content-Type.
    json_inputs = _inputs(httpclient, binary=False)
    _check(client.infer("iris", json_inputs, headers=dict(headers)), expected)
    # Outputs asked for by name, one binary and one JSON, through an alias.
    outputs = [
        httpclient.InferRequestedOutput("label", binary_data=False),
        httpclient.InferRequestedOutput("probabilities", binary_data=True),
    ]
    result = client.infer(
        "iris",
        _inputs(httpclient),
        model_version="production",
        outputs=outputs,
        headers=dict(headers),
    )
    _check(result, expected, outputs=("label", "probabilities"))
    described = {o["name"]: o for o in result.get_response()["outputs"]}
    assert "data" in described["label"] and "binary_data_size" in str(described["probabilities"])
    client.close()


@pytest.mark.parametrize(
    "datatypes",
    [("INT8", "UINT8"), ("INT16", "UINT16"), ("INT32", "UINT32"), ("INT64", "UINT64")],
    ids=lambda d: "-".join(d),
)
def test_tritonclient_http_integer_tensors(live, datatypes):
    """Integer tensors of every width, binary and JSON, predict as the same floats do."""
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{live.port}")
    headers = live.headers("predict")
    reference = requests.post(
        f"{live.url}/v1/models/iris/predict", json={"records": INTEGER_ROWS}, headers=dict(headers)
    ).json()
    labels = [p["label"] for p in reference["predictions"]]
    for binary in (True, False):
        inputs = _inputs(httpclient, numeric=datatypes, binary=binary)
        inputs[0].set_data_from_numpy(np.array([0, 1, 2], dtype=_NUMPY[datatypes[0]]), binary)
        inputs[1].set_data_from_numpy(np.array([[1], [2], [3]], dtype=_NUMPY[datatypes[1]]), binary)
        result = client.infer("iris", inputs, headers=dict(headers))
        assert [v.decode() for v in result.as_numpy("label")] == labels
    client.close()


def test_tritonclient_http_classification_compression_and_errors(live, expected):
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{live.port}")
    headers = live.headers("predict")
    # Triton's classification extension: the top 2 classes per row.
    top = [httpclient.InferRequestedOutput("probabilities", class_count=2)]
    result = client.infer("iris", _inputs(httpclient), outputs=top, headers=dict(headers))
    classes = result.as_numpy("probabilities")
    assert classes.shape == (3, 2)
    first = classes[0][0].decode().split(":")
    best = int(np.argmax(expected["probabilities"][0]))
    assert int(first[1]) == best and first[2] == expected["classes"][best]
    assert float(first[0]) == pytest.approx(float(expected["probabilities"][0][best]), abs=1e-5)
    # Compressed requests and answers.
    for algorithm in ("gzip", "deflate"):
        result = client.infer(
            "iris",
            _inputs(httpclient),
            headers=dict(headers),
            request_compression_algorithm=algorithm,
            response_compression_algorithm=algorithm,
        )
        _check(result, expected)
    # Errors arrive as the protocol's {"error"}, which the client raises.
    with pytest.raises(InferenceServerException, match="unknown input 'petal'"):
        bad = httpclient.InferInput("petal", [1], "FP32")
        bad.set_data_from_numpy(np.array([1.0], dtype=np.float32))
        client.infer("iris", [bad], headers=dict(headers))
    with pytest.raises(InferenceServerException, match="'predict' scope"):
        client.infer("iris", _inputs(httpclient), headers=live.headers("train"))
    client.close()


def test_tritonclient_aio(live, expected):
    async def run():
        client = aioclient.InferenceServerClient(url=f"127.0.0.1:{live.port}")
        headers = live.headers("predict")
        try:
            assert await client.is_server_live() and await client.is_server_ready()
            assert (await client.get_server_metadata())["name"] == "trainserve"
            meta = await client.get_model_metadata("iris", "production", headers=dict(headers))
            assert meta["versions"] == ["1"]
            assert await client.is_model_ready("iris", headers=dict(headers))
            _check(await client.infer("iris", _inputs(aioclient), headers=dict(headers)), expected)
            json_inputs = _inputs(aioclient, binary=False)
            _check(await client.infer("iris", json_inputs, headers=dict(headers)), expected)
        finally:
            await client.close()

    asyncio.run(run())


def test_kserve_inference_rest_client(live, expected):
    """KServe's InferenceRESTClient runs in its own virtualenv (pandas < 3)."""
    python = ROOT / ".venv" / "kserve" / "bin" / "python"
    assert python.exists(), "make install creates .venv/kserve (KServe's client)"
    script = ROOT / "tests" / "integration" / "kserve_client.py"
    run = subprocess.run(
        [str(python), str(script), live.url, live.keys["predict"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["live"] is True and report["ready"] is True
    assert report["model_ready"] is True and report["missing_model_ready"] is False
    assert report["server_metadata"]["extensions"]
    assert report["model_metadata"]["name"] == "iris"
    for answer in ("json", "binary"):
        assert report[answer]["labels"] == expected["labels"], answer
        np.testing.assert_allclose(
            np.array(report[answer]["probabilities"], dtype=np.float32),
            expected["probabilities"],
            atol=1e-6,
        )
