"""POST .../evaluate: metrics of a model on labelled JSON records or a streamed CSV."""

import gzip
import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tests.support.data import mixed_csv
from tests.support.training import train_model

# Cheap and fixed: these test the endpoint, not the recipe.
PLAIN = {"recipe": "plain", "epochs": 15, "learning_rate": 0.01, "seed": 0}


@pytest.fixture
def trained(app):
    dataset, _ = train_model(app, csv=mixed_csv(150), hyperparameters=PLAIN)
    return dataset


def _labelled(n: int = 60, seed: int = 4) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(mixed_csv(n, seed=seed)), keep_default_na=False, dtype=str)


def _records(frame: pd.DataFrame) -> list[dict]:
    records = []
    for row in frame.to_dict(orient="records"):
        record = {k: v for k, v in row.items() if v not in ("", "NA")}
        for k in ("x1", "x2"):
            if k in record:
                record[k] = float(record[k])
        if "flag" in record:
            record["flag"] = record["flag"] == "true"
        records.append(record)
    return records


def test_json_records_answer_every_metric_and_agree_with_predict(client, trained):
    frame = _labelled()
    records = _records(frame)
    response = client.post("/v1/models/iris/evaluate", json={"records": records})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["model"] == {"name": "iris", "version": 1}
    assert answer["target"] == "species" and answer["rows"] == 60
    assert answer["skipped_rows"] == 0
    features = [{k: v for k, v in r.items() if k != "species"} for r in records]
    predicted = client.post("/v1/models/iris/predict", json={"records": features}).get_json()
    labels = [p["label"] for p in predicted["predictions"]]
    truth = [r["species"] for r in records]
    assert answer["accuracy"] == pytest.approx(
        np.mean([a == b for a, b in zip(labels, truth, strict=True)])
    )
    p_true = [p["probabilities"][t] for p, t in zip(predicted["predictions"], truth, strict=True)]
    assert answer["log_loss"] == pytest.approx(-np.mean(np.log(p_true)))
    matrix = answer["confusion_matrix"]
    assert matrix["labels"] == ["setosa", "versicolor", "virginica"]
    assert sum(map(sum, matrix["counts"])) == 60
    assert sum(c["support"] for c in answer["per_class"].values()) == 60
    assert 0 <= answer["macro_f1"] <= 1 and 0 <= answer["ece"] <= 1
    bins = answer["reliability"]
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 60
    assert bins[0]["lower"] == 0 and bins[-1]["upper"] == 1


def test_csv_is_streamed_and_equals_json(client, trained):
    frame = _labelled()
    json_answer = client.post(
        "/v1/models/iris/versions/1/evaluate", json={"records": _records(frame)}
    ).get_json()
    body = frame.to_csv(index=False).encode()
    response = client.post(
        "/v1/models/iris/versions/1/evaluate",
        data=io.BytesIO(body),
        content_type="text/csv",
        # sent without a length, as a stream (read a chunk at a time)
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    for key in ("rows", "accuracy", "confusion_matrix", "per_class"):
        assert answer[key] == json_answer[key], key
    assert answer["log_loss"] == pytest.approx(json_answer["log_loss"], abs=1e-6)


def test_rows_without_a_label_are_left_out_and_counted(client, trained):
    frame = _labelled(20)
    frame.loc[[2, 5], "species"] = ""
    answer = client.post(
        "/v1/models/iris/evaluate", data=frame.to_csv(index=False), content_type="text/csv"
    ).get_json()
    assert answer["rows"] == 18 and answer["skipped_rows"] == 2


def test_another_label_column_by_name(client, trained):
    frame = _labelled(20).rename(columns={"species": "truth"})
    response = client.post(
        "/v1/models/iris/evaluate?target=truth",
        data=frame.to_csv(index=False),
        content_type="text/csv",
    )
    assert response.status_code == 200 and response.get_json()["target"] == "truth"


def test_errors_name_the_field(client, trained):
    frame = _labelled(10)
    records = _records(frame)
    no_target = [{k: v for k, v in r.items() if k != "species"} for r in records]
    response = client.post("/v1/models/iris/evaluate", json={"records": no_target})
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert "target" in response.get_json()["errors"]

    records[3]["species"] = "rose"
    response = client.post("/v1/models/iris/evaluate", json={"records": records})
    assert response.status_code == 400
    assert "rose" in response.get_json()["errors"]["records[3].species"][0]

    frame.loc[7, "species"] = "tulip"
    response = client.post(
        "/v1/models/iris/evaluate", data=frame.to_csv(index=False), content_type="text/csv"
    )
    assert response.status_code == 400
    assert "file[7].species" in response.get_json()["errors"]

    response = client.post(
        "/v1/models/iris/evaluate",
        data=frame.drop(columns=["species"]).to_csv(index=False),
        content_type="text/csv",
    )
    assert response.status_code == 400 and "target" in response.get_json()["errors"]

    bad_cell = _labelled(10)
    bad_cell.loc[4, "x1"] = "tall"
    response = client.post(
        "/v1/models/iris/evaluate", data=bad_cell.to_csv(index=False), content_type="text/csv"
    )
    assert response.status_code == 400 and response.get_json()["errors"]

    response = client.post("/v1/models/iris/evaluate", json={"rows": records})
    assert response.status_code == 400 and "records" in response.get_json()["errors"]
    response = client.post("/v1/models/iris/evaluate", data="x", content_type="text/plain")
    assert response.status_code == 415
    assert client.post("/v1/models/nope/evaluate", json={"records": records}).status_code == 404
    response = client.post("/v1/models/iris/versions/9/evaluate", json={"records": records})
    assert response.status_code == 404


def test_alias_route(client, trained):
    assert client.put("/v1/models/iris/aliases/prod", json={"version": 1}).status_code == 200
    body = _labelled(20).to_csv(index=False)
    response = client.post(
        "/v1/models/iris/aliases/prod/evaluate", data=body, content_type="text/csv"
    )
    assert response.status_code == 200 and response.get_json()["model"]["version"] == 1
    response = client.post(
        "/v1/models/iris/aliases/none/evaluate", data=body, content_type="text/csv"
    )
    assert response.status_code == 404


def test_another_tenants_model_is_404(secured, tenants):
    acme, globex = tenants["acme"], tenants["globex"]
    train_model(secured, csv=mixed_csv(150), hyperparameters=PLAIN, headers=acme)
    client = secured.test_client()
    body = _labelled(20).to_csv(index=False)
    for path in ("/v1/models/iris/evaluate", "/v1/models/iris/versions/1/evaluate"):
        ok = client.post(path, data=body, content_type="text/csv", headers=acme)
        assert ok.status_code == 200
        other = client.post(path, data=body, content_type="text/csv", headers=globex)
        assert other.status_code == 404


def test_openapi_documents_evaluate(client):
    spec = client.get("/openapi.json").get_json()
    for path in (
        "/v1/models/{name}/evaluate",
        "/v1/models/{name}/versions/{version}/evaluate",
        "/v1/models/{name}/aliases/{alias}/evaluate",
    ):
        operation = spec["paths"][path]["post"]
        assert "text/csv" in operation["requestBody"]["content"]
        assert "400" in operation["responses"]


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_compressed_csv_is_evaluated_as_the_plain_one(client, trained, codec):
    body = _labelled().to_csv(index=False).encode()
    plain = client.post("/v1/models/iris/evaluate", data=body, content_type="text/csv")
    packed = gzip.compress(body) if codec == "gzip" else pa.compress(body, "zstd", asbytes=True)
    response = client.post("/v1/models/iris/evaluate", data=packed, content_type="text/csv")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == plain.get_json()
    response = client.post(
        "/v1/models/iris/evaluate",
        data=packed[:-30],
        content_type="text/csv",
        headers={"Content-Encoding": codec},
    )
    assert response.status_code == 400 and response.content_type == "application/problem+json"
    assert codec in response.get_json()["errors"]["file"][0]
    response = client.post(
        "/v1/models/iris/evaluate",
        data=body,
        content_type="text/csv",
        headers={"Content-Encoding": "deflate"},
    )
    assert response.status_code == 415
