"""KServe's InferenceRESTClient against a live trainserve, run by test_oip_clients.py with
.venv/kserve's Python (kserve needs pandas < 3, so it cannot share the project's
environment). Prints one JSON line: what each call answered.

InferenceRESTClient has no metadata calls; the server and model metadata are fetched
with its own httpx client and validated with KServe's data models of those answers.

Usage: python kserve_client.py BASE_URL API_KEY
"""

import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest.v2_datamodels import ModelMetadataResponse, ServerMetadataResponse

ROWS = [
    {"x1": 2.0, "x2": 1.5, "colour": "red", "flag": True},
    {"x1": -1.0, "x2": -0.5, "colour": "blue", "flag": False},
    {"x1": 0.0, "x2": 3.0, "colour": "never-seen", "flag": True},
]


def inputs(binary: bool) -> list:
    columns = {
        "x1": ("FP32", np.array([r["x1"] for r in ROWS], dtype=np.float32)),
        "x2": ("FP64", np.array([r["x2"] for r in ROWS], dtype=np.float64)),
        "colour": ("BYTES", np.array([r["colour"].encode() for r in ROWS], dtype=np.object_)),
        "flag": ("BOOL", np.array([r["flag"] for r in ROWS])),
    }
    made = []
    for name, (datatype, values) in columns.items():
        tensor = InferInput(name, [len(ROWS)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        made.append(tensor)
    return made


def summary(response) -> dict:
    probabilities = response.get_output_by_name("probabilities").as_numpy()
    labels = response.get_output_by_name("label").as_numpy()
    return {
        "probabilities": probabilities.astype(float).tolist(),
        "labels": [v.decode() if isinstance(v, bytes) else str(v) for v in labels],
    }


async def main(base_url: str, key: str) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    report: dict = {}
    try:
        report["live"] = await client.is_server_live(base_url)
        report["ready"] = await client.is_server_ready(base_url)
        report["model_ready"] = await client.is_model_ready(base_url, "iris", headers=headers)
        report["missing_model_ready"] = await client.is_model_ready(
            base_url, "nope", headers=headers
        )
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as raw:
            server = (await raw.get("/v2")).raise_for_status().json()
            model = (await raw.get("/v2/models/iris")).raise_for_status().json()
        report["server_metadata"] = ServerMetadataResponse.model_validate(server).model_dump()
        report["model_metadata"] = ModelMetadataResponse.model_validate(model).model_dump()
        request = InferRequest("iris", inputs(binary=False))
        report["json"] = summary(await client.infer(base_url, request, "iris", headers=headers))
        outputs = [
            RequestedOutput("probabilities", {"binary_data": True}),
            RequestedOutput("label", {"binary_data": True}),
        ]
        request = InferRequest("iris", inputs(binary=True), request_outputs=outputs)
        report["binary"] = summary(await client.infer(base_url, request, "iris", headers=headers))
    finally:
        await client.close()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
