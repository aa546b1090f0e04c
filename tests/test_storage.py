"""Both storage backends keep the same small contract."""

import pytest

from service.storage import BlobNotFound, DatabaseStorage, MemoryStorage


@pytest.fixture(params=["memory", "database"])
def storage(request, db):
    if request.param == "memory":
        yield MemoryStorage()
        return
    with db.transaction() as session:
        yield DatabaseStorage(session)


def test_put_get_delete(storage):
    storage.put("a/b", b"\x00bytes")
    assert storage.get("a/b") == b"\x00bytes"
    storage.delete("a/b")
    storage.delete("a/b")  # deleting what is not there is fine
    with pytest.raises(BlobNotFound):
        storage.get("a/b")
