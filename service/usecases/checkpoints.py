"""A running job's checkpoint: the trainer's tensors (safetensors) as a blob in parts, and
the ``checkpoints`` row that points to it with the JSON state. No stored value is larger
than a blob part, whatever the network's size.

Saving is two-phase, like an upload: :func:`stage` writes the tensors part by part as a
``writing`` blob, each part in its own short transaction (or straight to the object
store); the epoch's transaction (``training.run.record_epoch``) then points the row to
it and marks it ready (:meth:`Staged.commit`), and discards the checkpoint it replaces,
whose parts go once that transaction has committed (:meth:`AttemptLease.write`). So:

- a crash before the commit leaves the previous checkpoint as it was, and the new parts
  a ``writing`` blob that the upkeep loop removes an hour later;
- a crash after it leaves the old checkpoint's blob ``deleting``, removed by the next
  upkeep pass;
- the job's end drops the row and discards the blob in its final transaction (:func:`drop`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.db.models import Checkpoint, new_id, utcnow
from service.db.session import Database
from service.ml.checkpoint import read_tensors
from service.storage import PART_SIZE, BlobUpload, Storage, backend_for, read_parts, write_blob

if TYPE_CHECKING:
    import torch

    from service.usecases.training.lease import AttemptLease

log = logging.getLogger("service.usecases.training")


@dataclass
class Staged:
    """A checkpoint's tensors written as a ``writing`` blob, not yet pointed to."""

    db: Database
    job_id: str
    key: str
    upload: BlobUpload
    state: dict

    def commit(self, session: Session, epoch: int, attempt: int) -> None:
        """In the epoch's transaction: make this the job's checkpoint and discard the one
        it replaces (its parts go after the commit). Safe to repeat in a retried
        transaction."""
        replaced = session.scalar(
            select(Checkpoint.blob_key).where(Checkpoint.job_id == self.job_id)
        )
        self.upload.commit(session)
        session.merge(
            Checkpoint(
                job_id=self.job_id,
                epoch=epoch,
                attempt=attempt,
                blob_key=self.key,
                state=self.state,
                created_at=utcnow(),
            )
        )
        if replaced is not None and replaced != self.key:
            Storage(session).discard(replaced)

    def abort(self) -> None:
        """Remove the parts unless a committed row points to them (a commit whose answer
        was lost); a failure here leaves them to the upkeep loop."""
        try:
            with self.db.transaction() as session:
                used = session.scalar(
                    select(Checkpoint.job_id).where(Checkpoint.blob_key == self.key)
                )
                if used is None:
                    Storage(session, backend_for(self.db)).delete(self.key)
        except Exception:  # noqa: BLE001 - the sweeper removes a writing blob later
            log.exception("could not remove the unused checkpoint %s; the sweeper will", self.key)


def stage(lease: AttemptLease, tensors: bytes, state: dict) -> Staged:
    """Write ``tensors`` as a new blob of the job's, retried through database outages."""
    return lease.retry(lambda: _write(lease.db, lease.job_id, tensors, state))


def _write(db: Database, job_id: str, tensors: bytes, state: dict) -> Staged:
    key = f"checkpoints/{job_id}/{new_id()}.safetensors"
    upload = write_blob(db, backend_for(db), key, tensors, PART_SIZE)
    return Staged(db, job_id, key, upload, state)


def read(db: Database, key: str) -> bytes:
    """A checkpoint's bytes held whole, each part checked against its SHA-256, and the
    whole (for checks; a resume reads :func:`tensors`)."""
    return b"".join(read_parts(db, backend_for(db), key))


def tensors(db: Database, key: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, its parts checked as :func:`read` checks them and read one
    at a time (``ml.checkpoint.read_tensors``: never the whole blob in memory)."""
    return read_tensors(read_parts(db, backend_for(db), key))


def drop(session: Session, job_id: str) -> None:
    """In the transaction that ends (or gives up on) the job: delete its checkpoint row and
    discard the blob (its parts go after the commit, or at the next upkeep pass)."""
    key = session.scalar(select(Checkpoint.blob_key).where(Checkpoint.job_id == job_id))
    if key is None:
        return
    session.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id))
    Storage(session).discard(key)
