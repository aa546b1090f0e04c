"""Rows that own blobs leave no part behind on any backend (the database, a directory, a
real S3-API server): a model version whose first try rolled back, a deleted dataset."""

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from service.db.models import Dataset, ModelVersion
from service.usecases import datasets
from service.usecases.training import run_training
from service.usecases.training import store as training_store
from tests.support.storage import stored
from tests.support.training import queued_job, stored_dataset


def test_a_version_number_taken_meanwhile_leaves_no_weights_behind(
    store_db, store_settings, publisher, monkeypatch
):
    first = queued_job(store_db, store_settings, publisher, rows=60, epochs=1)
    second = queued_job(store_db, store_settings, publisher, rows=60, epochs=1)
    assert run_training(store_db, store_settings, first, "a") == "succeeded"
    real = training_store.next_version
    calls = []

    def stale_once(session, tenant, name):  # read before the first job's version committed
        calls.append(name)
        return 1 if len(calls) == 1 else real(session, tenant, name)

    monkeypatch.setattr(training_store, "next_version", stale_once)
    assert run_training(store_db, store_settings, second, "a") == "succeeded"
    assert len(calls) == 2  # the first try hit the unique version and rolled back
    with store_db.transaction() as session:
        keys = sorted(session.scalars(select(ModelVersion.weights_key)))
    rows, parts, objects = stored(store_db, "models/")
    assert rows == 2 and parts >= 2
    assert {path.rsplit("/", 1)[0] for path in objects} <= set(keys)


def test_a_deleted_dataset_leaves_no_part(store_db, store_settings):
    dataset = stored_dataset(store_db, store_settings)
    assert stored(store_db, "datasets/")[0] == 1
    datasets.delete_dataset(store_db, "default", dataset.id)
    assert stored(store_db, "datasets/") == (0, 0, [])


@pytest.mark.parametrize(
    "table",
    [
        lambda: datasets.TableUpload.of_csv("csv", b"a,b\n1,x\n2,y\n"),
        lambda: datasets.TableUpload("records", records=[{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]),
    ],
    ids=["csv", "records"],
)
def test_an_upload_whose_commit_fails_leaves_no_part(store_db, store_settings, table):
    """A CSV body and JSON records alike: the dataset row's transaction fails at its
    commit, after the blob was written, and every part goes (objects included)."""

    def refuse(session):  # the dataset row's commit, not the parts' own ones
        if any(isinstance(row, Dataset) for row in session.identity_map.values()):
            raise RuntimeError("the commit failed")

    event.listen(Session, "before_commit", refuse)
    try:
        with pytest.raises(RuntimeError, match="commit failed"):
            datasets.upload_dataset(store_db, store_settings, "default", table())
    finally:
        event.remove(Session, "before_commit", refuse)
    assert stored(store_db, "datasets/") == (0, 0, [])
