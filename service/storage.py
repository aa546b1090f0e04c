"""Blobs (dataset Parquet files, model weights, checkpoints) in parts, behind a small interface.

A blob is a row in ``blobs`` (size, SHA-256, number of parts, state) and its parts, of
at most ``part_size`` bytes each (32 MiB), each with its own size and SHA-256 in
``blob_parts``. Where a part's bytes live is the backend's business:

- :class:`DatabaseParts` (the default): in ``blob_parts.data``, so the database stays
  the only shared state;
- :class:`ObjectParts`: in an object store named by ``TRAINSERVE_STORAGE_URL``
  (``file:///dir`` or ``s3://bucket/prefix``, through obstore), one object per part.

Two ways to write:

- :meth:`Storage.put` writes a small blob inside the caller's transaction (a
  JSON-records dataset; with an object store its objects outlive a rollback);
- :class:`BlobUpload` streams a blob of any size, each part in its own short
  transaction, so an upload holds no lock while the body arrives. The blob stays
  ``writing`` until :meth:`BlobUpload.commit` marks it ``ready`` in the transaction
  that stores the row pointing to it; :meth:`BlobUpload.abort` (any failure) deletes
  every part and the row, and :func:`remove_abandoned` deletes what a killed process
  left (``writing`` blobs untouched for an hour). :func:`write_blob` writes bytes
  already in memory that way (model weights, checkpoints).

Replacing or dropping a blob that a committed row points to (a job's checkpoint) is
two-phase as well: :meth:`Storage.discard` marks it ``deleting`` in the transaction
that stops pointing to it, and :func:`remove_discarded` deletes its parts once that
transaction has committed; a blob left ``deleting`` by a process that died in between
is removed by :func:`remove_abandoned` (the upkeep loop). So a rolled-back transaction
never loses the bytes its rows still point to, and a committed one leaves no orphan.

Every read checks each part's SHA-256 before handing out its bytes, and a whole read
the blob's at its end: ``parts_sha256``, the SHA-256 of its parts' digests in order (a
part changed, missing, added or moved no longer matches), which costs no second pass
over the bytes; blobs written before migration 0012 have the SHA-256 of their bytes
(``sha256``) instead. A part whose bytes are in ``blob_parts.data`` is read
from there whatever the backend (parts that migrations moved out of other columns).

Exceptions::

    StorageError
    ├── BlobNotFound
    └── BlobCorrupt
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Protocol
from urllib.parse import urlsplit

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from service.db.models import Blob, BlobPart, utcnow
from service.db.session import Database

log = logging.getLogger(__name__)

PART_SIZE = 32 * 1024 * 1024
ABANDONED_AFTER = timedelta(hours=1)
#: ``session.info`` key: the blobs :meth:`Storage.discard` marked in that session.
DISCARDED = "trainserve.discarded_blobs"


class StorageError(Exception):
    """Base class of storage failures."""


class BlobNotFound(StorageError):
    """No blob is stored under the key."""


class BlobCorrupt(StorageError):
    """A blob's bytes do not match the SHA-256 stored with them."""


class PartBackend(Protocol):
    """Where parts' bytes live. ``session`` is the transaction the part's row is in."""

    def write(self, session: Session, key: str, index: int, data: bytes) -> bytes | None:
        """Store a part; returns what goes in ``blob_parts.data`` (``None``: elsewhere)."""
        ...

    def read(self, session: Session, key: str, index: int) -> bytes: ...

    def remove(self, key: str, indices: list[int]) -> None:
        """Delete the parts' bytes kept outside the database (nothing for the database)."""
        ...


class DatabaseParts:
    """Parts in ``blob_parts.data``."""

    def write(self, session: Session, key: str, index: int, data: bytes) -> bytes | None:
        return data

    def read(self, session: Session, key: str, index: int) -> bytes:
        data = session.scalar(
            select(BlobPart.data).where(BlobPart.blob_key == key, BlobPart.index == index)
        )
        if data is None:
            raise BlobNotFound(f"{key} part {index}")
        return bytes(data)

    def remove(self, key: str, indices: list[int]) -> None:
        pass


class ObjectParts:
    """Parts as objects ``<prefix>/<key>/<index>`` in an object store (obstore).

    Parameters
    ----------
    url:
        ``file:///absolute/dir`` or ``s3://bucket[/prefix]``.
    endpoint:
        For ``s3://``: the endpoint of an S3-compatible store (``http://host:port``);
        credentials and region come from the usual ``AWS_*`` variables.
    """

    def __init__(self, url: str, endpoint: str = ""):
        import obstore.store

        self.url = url
        scheme = urlsplit(url).scheme
        if scheme == "file":
            self.store = obstore.store.LocalStore(urlsplit(url).path, mkdir=True)
        elif scheme == "s3":
            options = {}
            if endpoint:
                options["endpoint"] = endpoint
            client = {"allow_http": True} if endpoint.startswith("http://") else None
            self.store = obstore.store.from_url(url, client_options=client, **options)
        else:
            raise ValueError(f"TRAINSERVE_STORAGE_URL must be file:// or s3://, not {url!r}")

    @staticmethod
    def _path(key: str, index: int) -> str:
        return f"{key}/{index:06d}"

    def write(self, session: Session, key: str, index: int, data: bytes) -> bytes | None:
        import obstore

        obstore.put(self.store, self._path(key, index), data)
        return None

    def read(self, session: Session, key: str, index: int) -> bytes:
        import obstore

        try:
            return bytes(obstore.get(self.store, self._path(key, index)).bytes())
        except FileNotFoundError:
            raise BlobNotFound(f"{key} part {index}") from None

    def remove(self, key: str, indices: list[int]) -> None:
        import obstore

        paths = [self._path(key, index) for index in indices]
        for start in range(0, len(paths), 1000):
            try:
                obstore.delete(self.store, paths[start : start + 1000])
            except FileNotFoundError:
                for path in paths[start : start + 1000]:
                    try:
                        obstore.delete(self.store, path)
                    except FileNotFoundError:
                        pass

    def listing(self) -> list[str]:
        """Every object's path (tests: nothing left behind)."""
        import obstore

        return [meta["path"] for batch in obstore.list(self.store) for meta in batch]


@functools.lru_cache(maxsize=8)
def make_backend(url: str = "", endpoint: str = "") -> PartBackend:
    """The backend ``TRAINSERVE_STORAGE_URL`` names (empty or ``database``: the database)."""
    if url in ("", "database"):
        return DatabaseParts()
    return ObjectParts(url, endpoint)


def backend_for(db: Database) -> PartBackend:
    """Where the blobs of ``db`` keep their parts' bytes."""
    return make_backend(db.storage_url, db.storage_endpoint)


def storage(session: Session, db: Database) -> Storage:
    """A :class:`Storage` in ``session`` for the blobs of ``db``."""
    return Storage(session, backend_for(db))


class Storage:
    """Blobs read and written inside one session's transaction.

    ``put`` writes a blob inside this transaction: with an object store, a rollback
    leaves its objects behind, so the service writes every blob through
    :class:`BlobUpload` (``write_blob`` for bytes in memory), whose failures remove them;
    ``put`` is for tests and tools. Large blobs are read through :func:`read_parts`.
    """

    def __init__(self, session: Session, backend: PartBackend | None = None):
        self.session = session
        self.backend = backend or DatabaseParts()

    def put(self, key: str, data: bytes, *, part_size: int = PART_SIZE) -> None:
        """Store ``data`` under ``key`` in this transaction."""
        now = utcnow()
        view = memoryview(data)
        digests = [
            _add_part(self.session, self.backend, key, index, bytes(view[at : at + part_size]))
            for index, at in enumerate(range(0, len(view), part_size))
        ]
        self.session.add(
            Blob(
                key=key,
                size=len(data),
                parts_sha256=parts_sha256(digests),
                parts=len(digests),
                state="ready",
                created_at=now,
                updated_at=now,
            )
        )

    def get(self, key: str) -> bytes:
        """The whole blob, checked against its hashes."""
        return b"".join(self.iter_parts(key))

    def iter_parts(self, key: str) -> Iterator[bytes]:
        """The blob's parts in order, each checked, all read in this session."""
        whole = _Whole(_ready_blob(self.session, key))
        for part in _part_rows(self.session, key):
            data = _checked(_read(self.session, self.backend, key, part), part, key)
            whole.add(part, data)
            yield data
        whole.check(key)

    def delete(self, key: str) -> None:
        """Remove the blob and every part (missing is fine)."""
        indices = list(self.session.scalars(select(BlobPart.index).where(BlobPart.blob_key == key)))
        self.session.execute(delete(BlobPart).where(BlobPart.blob_key == key))
        self.session.execute(delete(Blob).where(Blob.key == key))
        self.backend.remove(key, indices)

    def discard(self, key: str) -> None:
        """Make the blob unreadable in this transaction (state ``deleting``); its parts go
        after the commit (:func:`remove_discarded` with the keys in ``session.info``), or
        at the next :func:`remove_abandoned` if this process dies first."""
        self.session.execute(
            update(Blob).where(Blob.key == key).values(state="deleting", updated_at=utcnow())
        )
        self.session.info.setdefault(DISCARDED, []).append(key)


def _add_part(
    session: Session,
    backend: PartBackend,
    key: str,
    index: int,
    data: bytes,
    digest: bytes | None = None,
) -> bytes:
    """Store a part (``digest``: its SHA-256, if the caller has it); its SHA-256."""
    digest = digest or hashlib.sha256(data).digest()
    stored = backend.write(session, key, index, data)
    session.add(
        BlobPart(blob_key=key, index=index, size=len(data), sha256=digest.hex(), data=stored)
    )
    return digest


def parts_sha256(digests) -> str:
    """A blob's ``parts_sha256``: the SHA-256 of its parts' SHA-256 digests (32 bytes
    each), in order."""
    whole = hashlib.sha256()
    for digest in digests:
        whole.update(digest)
    return whole.hexdigest()


class _Whole:
    """A whole read's check of the blob's SHA-256, part by part (see the module's
    docstring): of the parts' digests, or of the bytes for blobs written before 0012."""

    def __init__(self, blob: Blob):
        self.of_bytes = blob.parts_sha256 is None
        self.expected = blob.sha256 if self.of_bytes else blob.parts_sha256
        self.hash = hashlib.sha256()

    def add(self, part, data: bytes) -> None:
        self.hash.update(data if self.of_bytes else bytes.fromhex(part.sha256))

    def check(self, key: str) -> None:
        if self.expected is not None and self.hash.hexdigest() != self.expected:
            raise BlobCorrupt(f"blob {key!r} does not match its SHA-256")


def _ready_blob(session: Session, key: str) -> Blob:
    blob = session.get(Blob, key)
    if blob is None or blob.state != "ready":
        raise BlobNotFound(key)
    return blob


def _part_rows(session: Session, key: str) -> list:
    return list(
        session.execute(
            select(
                BlobPart.index,
                BlobPart.size,
                BlobPart.sha256,
                BlobPart.data.is_not(None).label("inline"),
            )
            .where(BlobPart.blob_key == key)
            .order_by(BlobPart.index)
        )
    )


def _read(session: Session, backend: PartBackend, key: str, part) -> bytes:
    if part.inline:
        return DatabaseParts().read(session, key, part.index)
    return backend.read(session, key, part.index)


def _checked(data: bytes, part, key: str) -> bytes:
    if len(data) != part.size or hashlib.sha256(data).hexdigest() != part.sha256:
        raise BlobCorrupt(f"blob {key!r} part {part.index} does not match its SHA-256")
    return data


def read_parts(db: Database, backend: PartBackend, key: str) -> Iterator[bytes]:
    """Stream a blob's parts, each read in its own short transaction and checked."""
    with db.transaction() as session:
        whole = _Whole(_ready_blob(session, key))
        parts = _part_rows(session, key)
    for part in parts:
        with db.transaction() as session:
            data = _checked(_read(session, backend, key, part), part, key)
        whole.add(part, data)
        yield data
    whole.check(key)


def blob_size(db: Database, key: str) -> int:
    """The stored size of a ready blob."""
    with db.transaction() as session:
        return _ready_blob(session, key).size


class BlobUpload(io.RawIOBase):
    """A blob written as a stream: a writable binary file, one part per ``part_size``.

    Each full part is stored in its own short transaction (no lock is held while the
    upload waits for bytes). Call :meth:`close` when every byte is written, then
    :meth:`commit` in the transaction that stores the row pointing to the blob; on any
    failure :meth:`abort` removes every part. Used as a context manager, an exception
    (or leaving without a commit) aborts.

    ``background``: the parts are hashed and stored by a thread of their own (started by
    the first full part, from the writing thread, so it shares that thread's priority),
    at most ``BACKGROUND_PARTS`` waiting, while the writer goes on producing the next:
    an upload's Parquet encoding and its part inserts overlap. A part that fails to
    store fails the next :meth:`write` or the :meth:`close`; :meth:`abort` stops the
    thread before it removes what was stored, so no part comes in after the removal.
    """

    def __init__(
        self,
        db: Database,
        backend: PartBackend,
        key: str,
        part_size: int = PART_SIZE,
        *,
        background: bool = False,
    ):
        super().__init__()
        self.db, self.backend, self.key, self.part_size = db, backend, key, part_size
        self.storer = _PartStorer(self._store) if background else None
        # The bytes written since the last part: the writers' own objects where they are
        # immutable (Parquet pages come as bytes), joined once into a part.
        self.pieces: list[bytes | memoryview] = []
        self.pending = 0
        self.index = 0
        self.size = 0
        # The parts' SHA-256 digests, taken in the writing thread (the storer only stores).
        self.digests: list[bytes] = []
        self.committed = False
        now = utcnow()
        with db.transaction() as session:
            session.add(
                Blob(key=key, size=0, parts=0, state="writing", created_at=now, updated_at=now)
            )

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.closed:
            raise ValueError("write to a closed upload")
        view = memoryview(data).cast("B")
        self.size += len(view)
        self.pieces.append(data if type(data) is bytes else bytes(view))
        self.pending += len(view)
        while self.pending >= self.part_size:
            self._store_part(self._take(self.part_size))
        return len(view)

    def _take(self, size: int) -> bytes:
        """The first ``size`` pending bytes (all of them if fewer), as one part. A bytearray
        kept as the buffer cost two copies into fresh memory per part, holding the GIL
        (the writes come from Parquet's writer, beside the request threads)."""
        joined = self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)
        self.pieces, self.pending = [], 0
        if len(joined) > size:  # the rest stays a view: a large write is not copied per part
            view = memoryview(joined)
            joined, rest = view[:size], view[size:]
            self.pieces, self.pending = [rest], len(rest)
        return joined if type(joined) is bytes else bytes(joined)

    def tell(self) -> int:
        return self.size

    def _store_part(self, data: bytes) -> None:
        digest = hashlib.sha256(data).digest()
        self.digests.append(digest)
        if self.storer is not None:
            self.storer.put(self.index, data, digest)
        else:
            self._store(self.index, data, digest)
        self.index += 1

    def _store(self, index: int, data: bytes, digest: bytes) -> None:
        with self.db.transaction() as session:
            _add_part(session, self.backend, self.key, index, data, digest)
            session.execute(update(Blob).where(Blob.key == self.key).values(updated_at=utcnow()))

    def close(self) -> None:
        """Store the last part (no more writes); with ``background``, wait for every part
        to be stored (a part that failed raises here)."""
        if not self.closed and (self.pending or self.index == 0) and self.size:
            self._store_part(self._take(self.pending))
        if self.storer is not None:
            self.storer.finish()
        super().close()

    def commit(self, session: Session) -> None:
        """Mark the blob ready in ``session`` (with the row that points to it)."""
        if not self.closed:
            self.close()
        session.execute(
            update(Blob)
            .where(Blob.key == self.key)
            .values(
                size=self.size,
                parts_sha256=parts_sha256(self.digests),
                parts=self.index,
                state="ready",
                updated_at=utcnow(),
            )
        )
        self.committed = True

    def abort(self) -> None:
        """Remove every part written and the blob's row."""
        self.pieces, self.pending = [], 0
        if self.storer is not None:
            self.storer.stop()  # nothing is stored after this: the removal below is final
        if not self.closed:
            super().close()
        try:
            with self.db.transaction() as session:
                Storage(session, self.backend).delete(self.key)
        except Exception:  # noqa: BLE001 - the sweeper removes it later
            log.exception("could not remove the aborted upload %s; the sweeper will", self.key)

    def __enter__(self) -> BlobUpload:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None or not self.committed:
            self.abort()


BACKGROUND_PARTS = 2


class _PartStorer:
    """A thread that stores parts handed to it in order, ``BACKGROUND_PARTS`` waiting at
    most; its first failure is raised by the next :meth:`put` or by :meth:`finish`, and
    the parts after it are dropped."""

    def __init__(self, store: Callable[[int, bytes, bytes], None]):
        self.store = store
        self.queue: queue.Queue = queue.Queue(maxsize=BACKGROUND_PARTS)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def put(self, index: int, data: bytes, digest: bytes) -> None:
        self._raise()
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="blob-parts", daemon=True)
            self.thread.start()
        self.queue.put((index, data, digest))

    def finish(self) -> None:
        """Wait for every part handed over; raise the first failure."""
        self._end()
        self._raise()

    def stop(self) -> None:
        """Drop the parts not stored yet and wait for the one being stored."""
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self._end()

    def _end(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.store(*item)
                except BaseException as exc:  # noqa: BLE001 - raised in the writer's thread
                    self.error = exc


def write_blob(
    db: Database, backend: PartBackend, key: str, data: bytes, part_size: int = PART_SIZE
) -> BlobUpload:
    """Write ``data`` as a ``writing`` blob, part by part, outside any caller's
    transaction; :meth:`BlobUpload.commit` it with the row that points to it. A failure
    here removes what was written."""
    upload = BlobUpload(db, backend, key, part_size)
    try:
        view = memoryview(data)
        for start in range(0, len(view), part_size):  # never more than a part buffered
            upload.write(view[start : start + part_size])
        upload.close()
    except BaseException:
        upload.abort()
        raise
    return upload


def remove_discarded(db: Database, backend: PartBackend, keys: list[str]) -> None:
    """Delete blobs :meth:`Storage.discard` marked in a transaction that has committed.
    A failure is logged, not raised: :func:`remove_abandoned` removes them later."""
    for key in keys:
        try:
            with db.transaction() as session:
                Storage(session, backend).delete(key)
        except Exception:  # noqa: BLE001 - the sweeper removes it later
            log.exception("could not remove the discarded blob %s; the sweeper will", key)


def remove_abandoned(db: Database, backend: PartBackend, older_than: timedelta = ABANDONED_AFTER):
    """Delete ``writing`` blobs untouched for ``older_than`` (their process died) and
    ``deleting`` ones (discarded, and the process died before removing them); returns
    how many."""
    cutoff = utcnow() - older_than
    with db.transaction() as session:
        keys = list(
            session.scalars(
                select(Blob.key).where(
                    or_(
                        and_(Blob.state == "writing", Blob.updated_at < cutoff),
                        Blob.state == "deleting",
                    )
                )
            )
        )
    for key in keys:
        with db.transaction() as session:
            Storage(session, backend).delete(key)
        log.info("removed the abandoned or discarded blob %s", key)
    return len(keys)


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
