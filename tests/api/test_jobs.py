"""/v1/jobs through the app factory (the publisher records instead of sending)."""

import io
import json

import pytest

from service.usecases.training import run_training
from tests.support.data import mixed_csv


@pytest.fixture
def dataset(client):
    return client.post("/v1/datasets", data=mixed_csv(), content_type="text/csv").get_json()


def submit(client, dataset, **overrides):
    body = {"dataset_id": dataset["id"], "target": "species", "model_name": "iris"}
    body.update(overrides)
    return client.post("/v1/jobs", json=body)


def test_submit_answers_202_with_location_and_publishes_after_commit(client, dataset, publisher):
    response = submit(client, dataset, hyperparameters={"epochs": 3})
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["epochs"] == 3 and job["epoch"] == 0
    assert job["features"] == ["x1", "x2", "colour", "flag"]
    # The job stores its recipe resolved: every knob the default recipe chose.
    assert job["hyperparameters"]["recipe"] == "tabular"
    assert job["hyperparameters"]["hidden_layers"] == [256, 256, 256]
    assert job["hyperparameters"]["network"] == "tabular"
    assert isinstance(job["hyperparameters"]["seed"], int)
    plain = submit(client, dataset, hyperparameters={"recipe": "plain", "dropout": 0.2})
    assert plain.get_json()["hyperparameters"]["hidden_layers"] == [64, 64]
    assert plain.get_json()["hyperparameters"]["dropout"] == 0.2
    assert publisher.published == [job["id"], plain.get_json()["id"]]
    assert client.get(f"/v1/jobs/{job['id']}").get_json()["status"] == "queued"


def test_broker_down_at_submit_still_accepts_the_job(client, dataset, publisher, db):
    publisher.down = True
    response = submit(client, dataset)
    assert response.status_code == 202
    from service.db.models import Job

    with db.transaction() as session:
        assert session.get(Job, response.get_json()["id"]).published_at is None


def test_one_shot_multipart_upload_and_train(client, publisher):
    response = client.post(
        "/v1/jobs",
        data={
            "file": (io.BytesIO(mixed_csv()), "flowers.csv"),
            "target": "species",
            "features": json.dumps(["x1", "colour"]),
            "hyperparameters": json.dumps({"epochs": 2, "hidden_layers": [8]}),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["model_name"] == "flowers" and job["features"] == ["x1", "colour"]
    assert job["hyperparameters"]["hidden_layers"] == [8]
    assert client.get(f"/v1/datasets/{job['dataset_id']}").status_code == 200


def test_a_rejected_one_shot_job_leaves_no_dataset(client):
    response = client.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(mixed_csv()), "f.csv"), "target": "nope"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400 and "target" in response.get_json()["errors"]
    assert client.get("/v1/datasets").get_json() == []


def test_idempotency_key_returns_the_same_job(client, dataset, publisher):
    headers = {"Idempotency-Key": "abc-123"}
    body = {"dataset_id": dataset["id"], "target": "species", "model_name": "iris"}
    first = client.post("/v1/jobs", json=body, headers=headers).get_json()
    second = client.post("/v1/jobs", json=body, headers=headers).get_json()
    assert first["id"] == second["id"]
    assert len(client.get("/v1/jobs").get_json()) == 1
    assert publisher.published == [first["id"]]


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"hyperparameters": {"epochs": "ten"}}, "hyperparameters.epochs"),
        ({"hyperparameters": {"epochs": 0}}, "hyperparameters.epochs"),
        ({"hyperparameters": {"learning_rate": -1}}, "hyperparameters.learning_rate"),
        ({"hyperparameters": {"hidden_layers": [0]}}, "hyperparameters.hidden_layers[0]"),
        ({"hyperparameters": {"hidden_layers": "64"}}, "hyperparameters.hidden_layers"),
        ({"hyperparameters": {"activation": "swish"}}, "hyperparameters.activation"),
        ({"hyperparameters": {"optimizer": "lbfgs"}}, "hyperparameters.optimizer"),
        ({"hyperparameters": {"colour": "red"}}, "hyperparameters.colour"),
        (
            {"hyperparameters": {"hidden_layers": [8192, 8192, 8192]}},
            "hyperparameters.hidden_layers",
        ),
        ({"hyperparameters": {"epochs": 5000}}, "hyperparameters.epochs"),
        ({"target": "nope"}, "target"),
        ({"target": "x1"}, "target"),
        ({"features": ["nope"]}, "features[0]"),
        ({"features": ["species"]}, "features"),
        ({"model_name": "bad name!"}, "model_name"),
        ({"dataset_id": "nope"}, "dataset_id"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_submissions_are_400_naming_the_field(client, dataset, publisher, overrides, field):
    response = submit(client, dataset, **overrides)
    assert response.status_code == 400, response.get_json()
    assert response.content_type == "application/problem+json"
    assert field in response.get_json()["errors"]
    assert client.get("/v1/jobs").get_json() == [] and publisher.published == []


def test_a_target_with_a_single_class_or_a_single_row_class_is_400(client):
    one_class = client.post(
        "/v1/datasets", data=b"a,y\n1,p\n2,p\n3,p\n", content_type="text/csv"
    ).get_json()
    response = submit(client, one_class, target="y")
    assert response.status_code == 400 and "two classes" in response.get_json()["detail"]
    single_row = client.post(
        "/v1/datasets", data=b"a,y\n1,p\n2,p\n3,q\n", content_type="text/csv"
    ).get_json()
    response = submit(client, single_row, target="y")
    assert response.status_code == 400 and "single row" in response.get_json()["detail"]


def test_list_filters(client, dataset):
    submit(client, dataset, model_name="a")
    submit(client, dataset, model_name="b")
    assert [j["model_name"] for j in client.get("/v1/jobs?model_name=a").get_json()] == ["a"]
    assert len(client.get("/v1/jobs?status=queued").get_json()) == 2
    assert client.get("/v1/jobs?status=succeeded").get_json() == []
    assert client.get("/v1/jobs?status=bogus").status_code == 400
    assert len(client.get("/v1/jobs?limit=1").get_json()) == 1


def test_cancel_queued_then_cancel_again_is_409(client, dataset):
    job = submit(client, dataset).get_json()
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 202 and response.get_json()["status"] == "cancelled"
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
    assert client.post("/v1/jobs/nope/cancel").status_code == 404


def test_metrics_rows_follow_training(app, client, dataset):
    job = submit(client, dataset, hyperparameters={"epochs": 4, "seed": 1}).get_json()
    assert client.get(f"/v1/jobs/{job['id']}/metrics").get_json() == {"epochs": []}
    svc = app.extensions["trainserve"]
    assert run_training(svc.database, svc.settings, job["id"], "test") == "succeeded"
    epochs = client.get(f"/v1/jobs/{job['id']}/metrics").get_json()["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert set(epochs[0]) == {
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "learning_rate",
        "duration_s",
        "samples_per_s",
    }
    done = client.get(f"/v1/jobs/{job['id']}").get_json()
    assert done["status"] == "succeeded" and done["model"] == {"name": "iris", "version": 1}
    assert done["latest"] == epochs[-1] and done["finished_at"] and done["started_at"]


def test_deleting_a_dataset_a_queued_job_uses_is_409(client, dataset):
    submit(client, dataset)
    response = client.delete(f"/v1/datasets/{dataset['id']}")
    assert response.status_code == 409 and response.content_type == "application/problem+json"


def test_column_types_override_and_notes(app, client):
    table = (
        "grade,constant,empty,y\n"
        + "".join(f"{i % 3 + 1},7,,{'p' if i % 3 == 0 else 'q'}\n" for i in range(30))
    ).encode()
    dataset = client.post("/v1/datasets", data=table, content_type="text/csv").get_json()
    job = submit(
        client,
        dataset,
        target="y",
        column_types={"grade": "categorical"},
        hyperparameters={"epochs": 2},
    ).get_json()
    assert job["features"] == ["grade", "constant", "empty"]
    svc = app.extensions["trainserve"]
    assert run_training(svc.database, svc.settings, job["id"], "test") == "succeeded"
    done = client.get(f"/v1/jobs/{job['id']}").get_json()
    assert any("'constant' dropped" in n for n in done["notes"])
    assert any("'empty' dropped" in n for n in done["notes"])
    version = client.get("/v1/models/iris/versions/1").get_json()
    assert version["input_schema"][0] == {
        "name": "grade",
        "type": "categorical",
        "categories": ["1", "2", "3"],
    }
    # Dropped columns are still accepted at predict time; 2 and 2.0 are the same grade.
    response = client.post(
        "/v1/models/iris/predict",
        json={"records": [{"grade": 2, "constant": 7}, {"grade": "2.0"}, {"grade": 2.0}]},
    )
    assert response.status_code == 200
    rows = response.get_json()["predictions"]
    assert rows[0]["probabilities"] == rows[1]["probabilities"] == rows[2]["probabilities"]


def test_a_column_types_override_the_data_cannot_take_is_400(client):
    dataset = client.post(
        "/v1/datasets", data=b"word,y\na,p\nb,q\na,p\nb,q\n", content_type="text/csv"
    ).get_json()
    response = submit(client, dataset, target="y", column_types={"word": "numeric"})
    assert response.status_code == 400
    assert "column_types.word" in response.get_json()["errors"]
    response = submit(client, dataset, target="y", column_types={"nope": "numeric"})
    assert "column_types.nope" in response.get_json()["errors"]
