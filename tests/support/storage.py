"""Blob stores for tests: each backend (the database, a local directory, a real S3-API
server) as a fixture parameter, and what a database's blobs left behind."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select

from service.db.models import Blob, BlobPart
from service.db.session import Database
from service.storage import ObjectParts, backend_for


@pytest.fixture(params=["database", "file", "s3"])
def storage_location(request, tmp_path) -> tuple[str, str]:
    """``(TRAINSERVE_STORAGE_URL, TRAINSERVE_STORAGE_ENDPOINT)`` of the parameter's backend."""
    if request.param == "database":
        return "", ""
    if request.param == "file":
        return f"file://{tmp_path / 'objects'}", ""
    return request.getfixturevalue("s3_url"), request.getfixturevalue("s3_endpoint")


@pytest.fixture
def blobs(storage_location, database_url):
    """A database whose blobs keep their parts in the backend of the parameter."""
    url, endpoint = storage_location
    database = Database(database_url, storage_url=url, storage_endpoint=endpoint)
    yield database
    database.close()


def stored(db: Database, prefix: str = "") -> tuple[int, int, list[str]]:
    """Blob rows, part rows and objects still stored (of the keys under ``prefix``)."""
    with db.transaction() as session:
        rows = session.scalar(
            select(func.count()).select_from(Blob).where(Blob.key.startswith(prefix))
        )
        parts = session.scalar(
            select(func.count()).select_from(BlobPart).where(BlobPart.blob_key.startswith(prefix))
        )
    backend = backend_for(db)
    objects = backend.listing() if isinstance(backend, ObjectParts) else []
    return rows, parts, [path for path in objects if path.startswith(prefix)]


@pytest.fixture
def store_settings(settings, storage_location):
    """The test settings with blobs in the backend of the parameter."""
    url, endpoint = storage_location
    return dataclasses.replace(settings, storage_url=url, storage_endpoint=endpoint)


@pytest.fixture
def store_db(store_settings):
    """The database of ``store_settings``."""
    database = Database.of(store_settings)
    yield database
    database.close()
