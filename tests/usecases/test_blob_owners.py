"""Rows that own blobs leave no part behind on any backend (the database, a directory, a
real S3-API server): a model version whose first try rolled back, a deleted dataset."""

from sqlalchemy import select

from service.db.models import ModelVersion
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
