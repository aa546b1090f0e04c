"""Blobs (dataset Parquet files, model weights) behind ``put`` / ``get`` / ``delete``.

Exceptions::

    StorageError
    └── BlobNotFound
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import delete
from sqlalchemy.orm import Session

from service.db.models import Blob


class StorageError(Exception):
    """Base class of storage failures."""


class BlobNotFound(StorageError):
    """No blob is stored under the key."""


class Storage(Protocol):
    """Where bytes live. Writes join the caller's transaction where the backend can."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...


class DatabaseStorage:
    """Blobs in the ``blobs`` table, inside the session's transaction.

    A failed request therefore never leaves a blob without its row, or a row without
    its blob.
    """

    def __init__(self, session: Session):
        self.session = session

    def put(self, key: str, data: bytes) -> None:
        self.session.add(Blob(key=key, data=data, size=len(data)))

    def get(self, key: str) -> bytes:
        blob = self.session.get(Blob, key)
        if blob is None:
            raise BlobNotFound(key)
        return blob.data

    def delete(self, key: str) -> None:
        self.session.execute(delete(Blob).where(Blob.key == key))


class MemoryStorage:
    """Blobs in a dict: for tests of code that needs a storage and no database."""

    def __init__(self):
        self.blobs: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        self.blobs[key] = bytes(data)

    def get(self, key: str) -> bytes:
        try:
            return self.blobs[key]
        except KeyError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        self.blobs.pop(key, None)
