"""Blobs in parts, on both backends: the database and an object store (a local directory,
and a real S3-API server): the ``blobs`` fixture of tests/support/storage.py."""

from datetime import timedelta

import pytest
from sqlalchemy import update

from service.db.models import Blob, BlobPart, utcnow
from service.storage import (
    DISCARDED,
    BlobCorrupt,
    BlobNotFound,
    BlobUpload,
    DatabaseParts,
    MemoryStorage,
    ObjectParts,
    Storage,
    backend_for,
    parts_sha256,
    read_parts,
    remove_abandoned,
    remove_discarded,
    storage,
)
from tests.support.storage import stored

DATA = bytes(range(256)) * 41 + b"tail"  # 10 500 bytes


def test_put_get_delete_in_one_transaction(blobs):
    with blobs.transaction() as session:
        storage(session, blobs).put("a/b", DATA, part_size=4096)
    with blobs.transaction() as session:
        assert storage(session, blobs).get("a/b") == DATA
        assert session.get(Blob, "a/b").parts == 3
    with blobs.transaction() as session:
        storage(session, blobs).delete("a/b")
        storage(session, blobs).delete("a/b")  # deleting what is not there is fine
    with blobs.transaction() as session, pytest.raises(BlobNotFound):
        storage(session, blobs).get("a/b")
    assert stored(blobs) == (0, 0, [])


def test_a_streamed_blob_is_stored_in_parts_and_read_back_as_a_stream(blobs):
    with BlobUpload(blobs, backend_for(blobs), "big", part_size=1000) as upload:
        for start in range(0, len(DATA), 777):  # writes that do not line up with parts
            upload.write(DATA[start : start + 777])
        upload.close()
        with blobs.transaction() as session:
            upload.commit(session)
    parts = list(read_parts(blobs, backend_for(blobs), "big"))
    assert [len(p) for p in parts] == [1000] * 10 + [500]
    assert b"".join(parts) == DATA
    with blobs.transaction() as session:
        blob = session.get(Blob, "big")
        assert (blob.size, blob.parts, blob.state) == (len(DATA), 11, "ready")
        storage(session, blobs).delete("big")
    assert stored(blobs) == (0, 0, [])


def test_a_streamed_blob_keeps_what_each_write_held_whatever_its_type(blobs):
    """A write larger than many parts, bytearrays changed after they were written, and
    memoryviews: the blob holds the bytes as they were written, in parts of the size."""
    buffer = bytearray(DATA[:300])
    with BlobUpload(blobs, backend_for(blobs), "mixed", part_size=1000) as upload:
        upload.write(buffer)
        buffer[:] = b"\0" * 300  # the writer reuses its buffer
        upload.write(memoryview(DATA)[300:7300])  # seven parts in one write
        upload.write(DATA[7300:])
        upload.close()
        with blobs.transaction() as session:
            upload.commit(session)
    parts = list(read_parts(blobs, backend_for(blobs), "mixed"))
    assert [len(p) for p in parts] == [1000] * 10 + [500]
    assert b"".join(parts) == DATA


def test_a_part_that_changed_is_refused_on_read(blobs):
    with blobs.transaction() as session:
        storage(session, blobs).put("w", DATA, part_size=4096)
    backend = backend_for(blobs)
    if isinstance(backend, ObjectParts):
        with blobs.transaction() as session:
            backend.write(session, "w", 1, b"x" * 4096)
    else:
        with blobs.transaction() as session:
            session.execute(
                update(BlobPart)
                .where(BlobPart.blob_key == "w", BlobPart.index == 1)
                .values(data=b"x" * 4096)
            )
    parts = read_parts(blobs, backend, "w")
    assert next(parts) == DATA[:4096]  # the first part is intact and handed out
    with pytest.raises(BlobCorrupt, match="part 1"):
        next(parts)


def test_a_blob_is_checked_whole_by_its_parts_digests(blobs):
    """A part missing (each part intact), or two parts swapped with their rows, is
    refused at the end of a whole read: the blob's SHA-256 is of its parts' digests."""
    import hashlib

    from sqlalchemy import delete

    data = bytes(range(251)) * 42  # no two parts of 4096 bytes alike
    digests = [hashlib.sha256(data[i : i + 4096]).digest() for i in range(0, len(data), 4096)]
    with blobs.transaction() as session:
        storage(session, blobs).put("w", data, part_size=4096)
        blob = session.get(Blob, "w")
        assert (blob.sha256, blob.parts_sha256) == (None, parts_sha256(digests))
    with BlobUpload(blobs, backend_for(blobs), "u", part_size=4096, background=True) as upload:
        upload.write(data)
        upload.close()
        with blobs.transaction() as session:
            upload.commit(session)
            assert session.get(Blob, "u").parts_sha256 == parts_sha256(digests)
    with blobs.transaction() as session:
        session.execute(delete(BlobPart).where(BlobPart.blob_key == "w", BlobPart.index == 2))
    with blobs.transaction() as session, pytest.raises(BlobCorrupt, match="its SHA-256"):
        storage(session, blobs).get("w")
    with blobs.transaction() as session:  # parts 0 and 1 trade places, rows and bytes
        for index, new in ((0, -1), (1, 0), (-1, 1)):
            session.execute(
                update(BlobPart)
                .where(BlobPart.blob_key == "u", BlobPart.index == index)
                .values(index=new)
            )
        if isinstance(backend_for(blobs), ObjectParts):  # the objects trade places too
            backend = backend_for(blobs)
            first, second = backend.read(session, "u", 0), backend.read(session, "u", 1)
            backend.write(session, "u", 0, second)
            backend.write(session, "u", 1, first)
    with pytest.raises(BlobCorrupt, match="its SHA-256"):
        list(read_parts(blobs, backend_for(blobs), "u"))


def test_a_blob_written_before_0012_is_checked_by_the_hash_of_its_bytes(blobs):
    import hashlib

    with blobs.transaction() as session:
        storage(session, blobs).put("old", DATA, part_size=4096)
        session.execute(
            update(Blob)
            .where(Blob.key == "old")
            .values(parts_sha256=None, sha256=hashlib.sha256(DATA).hexdigest())
        )
    assert b"".join(read_parts(blobs, backend_for(blobs), "old")) == DATA
    with blobs.transaction() as session:
        assert storage(session, blobs).get("old") == DATA
        session.execute(update(Blob).where(Blob.key == "old").values(sha256="0" * 64))
    with pytest.raises(BlobCorrupt, match="its SHA-256"):
        list(read_parts(blobs, backend_for(blobs), "old"))


def test_an_aborted_upload_leaves_nothing(blobs):
    with pytest.raises(RuntimeError), BlobUpload(blobs, backend_for(blobs), "x", 1000) as upload:
        upload.write(DATA)  # ten parts stored
        assert stored(blobs)[1] == 10
        raise RuntimeError("the client went away")
    assert stored(blobs) == (0, 0, [])


def test_parts_stored_in_the_background_are_the_same_parts(blobs):
    with BlobUpload(blobs, backend_for(blobs), "bg", 1000, background=True) as upload:
        for start in range(0, len(DATA), 777):
            upload.write(DATA[start : start + 777])
        upload.close()
        assert stored(blobs)[1] == 11  # every part stored once close returns
        with blobs.transaction() as session:
            upload.commit(session)
    assert b"".join(read_parts(blobs, backend_for(blobs), "bg")) == DATA


class _FailingBackend:
    """Stores parts through ``backend`` until part ``fail_at``, which raises."""

    def __init__(self, backend, fail_at: int):
        self.backend, self.fail_at = backend, fail_at

    def write(self, session, key, index, data):
        if index == self.fail_at:
            raise OSError("the store went away")
        return self.backend.write(session, key, index, data)

    def read(self, session, key, index):
        return self.backend.read(session, key, index)

    def remove(self, key, indices):
        self.backend.remove(key, indices)


@pytest.mark.parametrize("fail_at", [0, 4, 10])
def test_a_part_that_fails_in_the_background_fails_the_upload_and_leaves_nothing(blobs, fail_at):
    """The storing thread's failure comes out of a later write or the close, and the
    abort waits for the thread before removing what it stored: no part comes after."""
    backend = _FailingBackend(backend_for(blobs), fail_at)
    with pytest.raises(OSError, match="went away"):
        with BlobUpload(blobs, backend, "bad", 1000, background=True) as upload:
            for start in range(0, len(DATA), 500):
                upload.write(DATA[start : start + 500])
            upload.close()
            with blobs.transaction() as session:
                upload.commit(session)
    assert stored(blobs) == (0, 0, [])


def test_an_aborted_background_upload_leaves_nothing(blobs):
    with pytest.raises(RuntimeError):
        with BlobUpload(blobs, backend_for(blobs), "gone", 1000, background=True) as upload:
            upload.write(DATA)  # parts waiting for, or in, the storing thread
            raise RuntimeError("the client went away")
    assert stored(blobs) == (0, 0, [])


def test_an_upload_whose_row_is_rolled_back_leaves_nothing(blobs):
    with pytest.raises(ValueError), BlobUpload(blobs, backend_for(blobs), "y", 1000) as upload:
        upload.write(DATA)
        upload.close()
        with blobs.transaction() as session:
            upload.commit(session)
            raise ValueError("the dataset row was refused")
    assert stored(blobs) == (0, 0, [])


def test_an_upload_abandoned_by_a_dead_process_is_removed_later(blobs):
    upload = BlobUpload(blobs, backend_for(blobs), "z", 1000)
    upload.write(DATA)  # ... and the process is killed here: no abort runs
    assert remove_abandoned(blobs, backend_for(blobs)) == 0  # still live
    with blobs.transaction() as session:
        session.execute(update(Blob).values(updated_at=utcnow() - timedelta(hours=2)))
    assert remove_abandoned(blobs, backend_for(blobs)) == 1
    assert stored(blobs) == (0, 0, [])


def test_memory_storage_keeps_the_same_small_contract():
    memory = MemoryStorage()
    memory.put("a", b"\x00bytes")
    assert memory.get("a") == b"\x00bytes"
    memory.delete("a")
    with pytest.raises(BlobNotFound):
        memory.get("a")


def test_a_discarded_blob_stays_until_the_commit_and_goes_after_it(blobs):
    with blobs.transaction() as session:
        storage(session, blobs).put("old", DATA, part_size=4096)
    with pytest.raises(RuntimeError), blobs.transaction() as session:
        storage(session, blobs).discard("old")
        raise RuntimeError("the row that replaces it was refused")
    with blobs.transaction() as session:  # rolled back: still whole and readable
        assert storage(session, blobs).get("old") == DATA
    with blobs.transaction() as session:
        storage(session, blobs).discard("old")
        discarded = session.info[DISCARDED]
    with blobs.transaction() as session, pytest.raises(BlobNotFound):
        storage(session, blobs).get("old")  # committed: unreadable at once
    remove_discarded(blobs, backend_for(blobs), discarded)
    assert stored(blobs) == (0, 0, [])


def test_a_discarded_blob_whose_process_died_is_removed_by_the_sweep(blobs):
    with blobs.transaction() as session:
        storage(session, blobs).put("old", DATA, part_size=4096)
    with blobs.transaction() as session:
        storage(session, blobs).discard("old")  # ... and the process dies before removing it
    assert remove_abandoned(blobs, backend_for(blobs)) == 1
    assert stored(blobs) == (0, 0, [])


def test_parts_kept_in_the_database_are_read_whatever_the_backend(blobs):
    """What migrations moved into blob_parts.data stays readable with an object store."""
    with blobs.transaction() as session:
        Storage(session, DatabaseParts()).put("migrated", DATA, part_size=4096)
    assert b"".join(read_parts(blobs, backend_for(blobs), "migrated")) == DATA
    with blobs.transaction() as session:
        assert storage(session, blobs).get("migrated") == DATA
        storage(session, blobs).delete("migrated")
    assert stored(blobs) == (0, 0, [])
