"""The Open Inference Protocol (KServe v2) routes, on models trained in-process."""

import json

import pytest

from tests.support.data import mixed_csv
from tests.support.training import train_model


@pytest.fixture
def trained(app, client):
    train_model(app, csv=mixed_csv(200), hyperparameters={"epochs": 3, "seed": 0})
    numeric = b"a,b,y\n" + b"".join(
        f"{i % 7},{(i * 3) % 5},{'p' if i % 2 else 'q'}\n".encode() for i in range(60)
    )
    train_model(app, csv=numeric, target="y", name="numbers", hyperparameters={"epochs": 3})


def test_health_and_model_metadata(client, trained):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    meta = client.get("/v2/models/iris").get_json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"]
    assert meta["inputs"] == [
        {"name": "x1", "datatype": "FP32", "shape": [-1]},
        {"name": "x2", "datatype": "FP32", "shape": [-1]},
        {"name": "colour", "datatype": "BYTES", "shape": [-1]},
        {"name": "flag", "datatype": "BOOL", "shape": [-1]},
    ]
    assert meta["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}
    assert client.get("/v2/models/iris/versions/1").get_json()["versions"] == ["1"]
    assert client.get("/v2/models/iris/ready").get_json() == {"name": "iris", "ready": True}
    assert client.get("/v2/models/iris/versions/1/ready").status_code == 200


def test_infer_with_one_input_per_feature_matches_v1_predict(client, trained):
    body = {
        "id": "req-1",
        "inputs": [
            {"name": "x1", "shape": [2], "datatype": "FP32", "data": [2.0, -2.0]},
            {"name": "x2", "shape": [2, 1], "datatype": "FP32", "data": [[1.0], [-1.0]]},
            {"name": "colour", "shape": [2], "datatype": "BYTES", "data": ["red", "blue"]},
            {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [True, False]},
        ],
    }
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 200, response.get_json()
    out = response.get_json()
    assert (out["model_name"], out["model_version"], out["id"]) == ("iris", "1", "req-1")
    probabilities, labels = out["outputs"]
    assert probabilities["shape"] == [2, 3] and probabilities["datatype"] == "FP32"
    assert len(probabilities["data"]) == 6 and labels["datatype"] == "BYTES"
    v1 = client.post(
        "/v1/models/iris/predict",
        json={
            "records": [
                {"x1": 2.0, "x2": 1.0, "colour": "red", "flag": True},
                {"x1": -2.0, "x2": -1.0, "colour": "blue", "flag": False},
            ]
        },
    ).get_json()
    assert labels["data"] == [p["label"] for p in v1["predictions"]]
    first = list(v1["predictions"][0]["probabilities"].values())
    assert probabilities["data"][:3] == pytest.approx(first, abs=1e-6)


def test_infer_with_one_matrix_for_an_all_numeric_model(client, trained):
    body = {
        "inputs": [
            {"name": "input-0", "shape": [3, 2], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 0]}
        ],
        "outputs": [{"name": "label"}],
    }
    out = client.post("/v2/models/numbers/versions/1/infer", json=body).get_json()
    assert [o["name"] for o in out["outputs"]] == ["label"]
    assert out["outputs"][0]["shape"] == [3] and out["id"]


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        (
            "/v2/models/nope/infer",
            {"inputs": [{"name": "x1", "shape": [1], "datatype": "FP32", "data": [1]}]},
            404,
            "no model",
        ),
        (
            "/v2/models/iris/versions/x/infer",
            {"inputs": [{"name": "x1", "shape": [1], "datatype": "FP32", "data": [1]}]},
            404,
            "no version",
        ),
        ("/v2/models/iris/infer", {"inputs": []}, 400, "inputs"),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "petal", "shape": [1], "datatype": "FP32", "data": [1]}]},
            400,
            "unknown input",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x1", "shape": [2], "datatype": "FP32", "data": [1]}]},
            400,
            "1 values for shape",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x1", "shape": [1], "datatype": "BYTES", "data": ["tall"]}]},
            400,
            "must be a number",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "m", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
            400,
            "categorical",
        ),
        (
            "/v2/models/iris/infer",
            {
                "inputs": [{"name": "x1", "shape": [1], "datatype": "FP32", "data": [1]}],
                "outputs": [{"name": "logits"}],
            },
            400,
            "unknown output",
        ),
    ],
)
def test_errors_use_the_protocols_error_body(client, trained, path, body, status, words):
    response = client.post(path, json=body)
    assert response.status_code == status
    error = response.get_json()
    assert set(error) == {"error"} and words in error["error"], error


def test_absurd_shapes_are_400_not_500(client, trained):
    for shape in ([1, 2**70], [2**70], [2**70, 4]):
        body = {"inputs": [{"name": "x1", "shape": shape, "datatype": "FP32", "data": [1]}]}
        response = client.post("/v2/models/iris/infer", json=body)
        assert response.status_code == 400, (shape, response.get_json())
        matrix = {"inputs": [{"name": "m", "shape": shape, "datatype": "FP32", "data": [1]}]}
        assert client.post("/v2/models/numbers/infer", json=matrix).status_code == 400


def test_non_json_is_415_in_the_protocols_shape(client, trained):
    response = client.post("/v2/models/iris/infer", data="x", content_type="text/plain")
    assert response.status_code == 415 and "error" in response.get_json()


def _binary(header: dict, raw: bytes, length: int | None = None, **headers) -> dict:
    body = json.dumps(header).encode()
    size = len(body) if length is None else length
    return {
        "data": body + raw,
        "headers": {"Inference-Header-Content-Length": str(size), **headers},
        "content_type": "application/octet-stream",
    }


def _x1(size: int, datatype: str = "FP32", shape=(1,)) -> dict:
    tensor = {"name": "x1", "shape": list(shape), "datatype": datatype}
    return {"inputs": [{**tensor, "parameters": {"binary_data_size": size}}]}


BYTES_COLOUR = {
    "inputs": [
        {"name": "colour", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 7}}
    ]
}


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (_binary(_x1(4), b"\0\0\x80?", length=10_000), "Inference-Header-Content-Length"),
        (_binary(_x1(4), b"\0\0\x80?", length=-1), "Inference-Header-Content-Length"),
        (_binary(_x1(8), b"\0\0\x80?"), "runs past the end"),
        (_binary(_x1(4), b"\0\0\x80?\0"), "1 bytes after the last"),
        (_binary(_x1(3), b"\0\0\x80"), "3 bytes for shape [1] of FP32"),
        (_binary(_x1(1, "BOOL"), b"\x02"), "byte 0 or 1"),
        (_binary(BYTES_COLOUR, b"\x03\0\0\0r\xffd"), "element 0 is not UTF-8"),
        (_binary(BYTES_COLOUR, b"\x09\0\0\0red"), "claims 9 bytes"),
        (_binary({"inputs": [{"name": "x1", "shape": [1], "datatype": "FP32"}]}, b""), "neither"),
        (_binary({"inputs": "x"}, b"\0"), "binary data follows"),
        (_binary(_x1(2, "BF16"), b"\0\0"), "cannot be sent as binary"),
        (_binary(_x1(1, "FP32", (-1,)), b"\0"), "unknown (-1) dimension"),
        ({"data": b"\x1f\x8b garbage", "headers": {"Content-Encoding": "gzip"}}, "not valid gzip"),
        ({"data": b"\xef\xbb\xbf{}", "content_type": "application/json"}, "not valid JSON"),
        ({"data": b'{"inputs": [\x00]}', "content_type": "application/json"}, "not valid JSON"),
    ],
    ids=[
        "header-length-past-the-body",
        "header-length-negative",
        "binary-size-past-the-end",
        "bytes-left-over",
        "size-not-a-multiple",
        "bool-byte-2",
        "bytes-not-utf8",
        "bytes-length-past-the-end",
        "no-data-no-binary",
        "binary-without-inputs",
        "bf16",
        "unknown-dimension",
        "gzip-garbage",
        "bom-json",
        "nul-in-json",
    ],
)
def test_binary_and_encoded_bodies_that_do_not_fit_are_400(client, trained, kwargs, words):
    response = client.post("/v2/models/iris/infer", **kwargs)
    error = response.get_json()
    assert response.status_code == 400, error
    assert set(error) == {"error"} and words in error["error"], error


def test_an_unknown_content_encoding_is_415(client, trained):
    response = client.post("/v2/models/iris/infer", data=b"{}", headers={"Content-Encoding": "br"})
    assert response.status_code == 415 and "Content-Encoding" in response.get_json()["error"]


def test_a_gzip_body_inflating_past_the_request_limit_is_400(client, trained, settings):
    """The inflated body is bounded by TRAINSERVE_MAX_REQUEST_BYTES (the whole-body limit),
    not by the upload limit of streamed tables (50 GiB): a small bomb stays small."""
    import gzip

    bomb = gzip.compress(b" " * (settings.max_request_bytes + 1))
    assert len(bomb) < settings.max_request_bytes // 100
    response = client.post(
        "/v2/models/iris/infer", data=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 400, response.get_json()
    assert "larger than the limit of" in response.get_json()["error"]
