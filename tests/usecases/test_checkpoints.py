"""A job's checkpoint as a blob in parts, on every backend (the database, a directory, a
real S3-API server): stored in several parts and read back exactly, replaced without
leaving the old parts, removed when the job ends, left usable by a crash mid-write, and
a resumed job identical to an uninterrupted one."""

import tracemalloc
from datetime import timedelta

import pytest
import torch
from safetensors.torch import save as save_safetensors
from sqlalchemy import delete, select, update

from service.db.models import (
    Blob,
    BlobPart,
    Checkpoint,
    EpochMetric,
    Job,
    JobStatus,
    ModelVersion,
    utcnow,
)
from service.storage import BlobCorrupt, ObjectParts, backend_for, remove_abandoned
from service.usecases import checkpoints
from service.usecases.training import AttemptLease, LeaseLost, run_training
from service.usecases.training import lease as training_lease
from service.usecases.training import run as training_run
from tests.support.storage import stored
from tests.support.training import kill_first_attempt_after, queued_job

PART = 1000
TENSORS = bytes(range(256)) * 41 + b"tail"  # 10 500 bytes: 11 parts of PART


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    monkeypatch.setattr(checkpoints, "PART_SIZE", PART)


@pytest.fixture
def job_id(store_db, store_settings, publisher):
    return queued_job(store_db, store_settings, publisher, rows=300, hidden_layers=[16], seed=0)


def saved(db, lease, epoch, tensors, state=None):
    staged = checkpoints.stage(lease, tensors, state or {"format": 1})
    lease.write(lambda session: staged.commit(session, epoch, lease.number))
    return staged.key


def row(db, job_id):
    with db.transaction() as session:
        return session.get(Checkpoint, job_id)


def test_a_checkpoint_larger_than_a_part_is_stored_in_parts_and_read_back_exactly(
    store_db, store_settings, job_id
):
    lease = AttemptLease.claim(store_db, store_settings, job_id, "a")
    key = saved(store_db, lease, 1, TENSORS, {"format": 1, "epoch": 1})
    assert (row(store_db, job_id).blob_key, row(store_db, job_id).state["epoch"]) == (key, 1)
    rows, parts, objects = stored(store_db, "checkpoints/")
    assert (rows, parts) == (1, 11)
    if isinstance(backend_for(store_db), ObjectParts):
        assert len(objects) == 11
    assert checkpoints.read(store_db, key) == TENSORS
    # The content hash is checked on read.
    with store_db.transaction() as session:
        backend_for(store_db).write(session, key, 3, b"x" * PART)
        if not isinstance(backend_for(store_db), ObjectParts):
            session.execute(
                update(BlobPart)
                .where(BlobPart.blob_key == key, BlobPart.index == 3)
                .values(data=b"x" * PART)
            )
    with pytest.raises(BlobCorrupt, match="part 3"):
        checkpoints.read(store_db, key)


def test_replacing_a_checkpoint_removes_the_old_parts(store_db, store_settings, job_id):
    lease = AttemptLease.claim(store_db, store_settings, job_id, "a")
    saved(store_db, lease, 1, TENSORS)
    newer = TENSORS[::-1] + b"!"
    key = saved(store_db, lease, 2, newer)
    rows, parts, objects = stored(store_db, "checkpoints/")
    assert (rows, parts) == (1, 11)
    if isinstance(backend_for(store_db), ObjectParts):
        assert sorted(objects) == [f"{key}/{index:06d}" for index in range(11)]
    assert row(store_db, job_id).epoch == 2 and checkpoints.read(store_db, key) == newer


def test_the_jobs_end_removes_every_part(store_db, store_settings, job_id):
    lease = AttemptLease.claim(store_db, store_settings, job_id, "a")
    saved(store_db, lease, 1, TENSORS)
    lease.finish(JobStatus.CANCELLED)
    assert row(store_db, job_id) is None
    assert stored(store_db, "checkpoints/") == (0, 0, [])


def test_a_resume_reads_the_checkpoints_tensors_a_part_at_a_time(
    store_db, store_settings, job_id, monkeypatch
):
    """The parts go through a file, never all in memory at once: Python's allocations
    peak at a few parts of the 17 (joining them held the whole blob twice)."""
    monkeypatch.setattr(checkpoints, "PART_SIZE", 1 << 20)
    tensors = {
        "model.weight": torch.arange(4 << 20, dtype=torch.float32),  # 16 MiB
        "optimizer.0.step": torch.tensor(3.0),
        "empty": torch.zeros(0, 2),
        "half": torch.ones(3, dtype=torch.bfloat16),
        "flags": torch.tensor([True, False]),
        "rng.torch": torch.get_rng_state(),
    }
    lease = AttemptLease.claim(store_db, store_settings, job_id, "a")
    key = saved(store_db, lease, 1, save_safetensors(tensors))
    assert stored(store_db, "checkpoints/")[1] == 17
    tracemalloc.start()
    try:
        read = checkpoints.tensors(store_db, key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak
    assert read.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert read[name].dtype == tensor.dtype and torch.equal(read[name], tensor), name


def test_a_failed_epoch_transaction_keeps_the_previous_checkpoint_and_leaves_no_parts(
    store_db, store_settings, job_id
):
    lease = AttemptLease.claim(store_db, store_settings, job_id, "a")
    key = saved(store_db, lease, 1, TENSORS)
    staged = checkpoints.stage(lease, TENSORS[::-1], {"format": 1})
    with store_db.transaction() as session:  # another attempt takes the job over
        session.execute(update(Job).values(attempt=Job.attempt + 1))
    with pytest.raises(LeaseLost):
        lease.write(lambda session: (lease.renew(session), staged.commit(session, 2, 1)))
    staged.abort()  # what record_epoch does on any failure
    assert row(store_db, job_id).blob_key == key
    assert checkpoints.read(store_db, key) == TENSORS
    assert stored(store_db, "checkpoints/")[:2] == (1, 11)


def test_parts_left_by_a_crash_are_removed_by_the_upkeep_sweep(
    store_db, store_settings, job_id, monkeypatch
):
    lease = AttemptLease.claim(store_db, store_settings, job_id, "a")
    first = saved(store_db, lease, 1, TENSORS)
    # Killed mid-write: a 'writing' blob no row points to; the checkpoint is still usable.
    checkpoints.stage(lease, TENSORS[::-1], {"format": 1})
    assert checkpoints.read(store_db, row(store_db, job_id).blob_key) == TENSORS
    # Killed between the commit of epoch 2 and the removal of epoch 1's parts.
    monkeypatch.setattr(training_lease, "remove_discarded", lambda *args: None)
    second = saved(store_db, lease, 2, TENSORS + b"2")
    with store_db.transaction() as session:
        assert session.get(Blob, first).state == "deleting"
        session.execute(
            update(Blob)
            .where(Blob.state == "writing")
            .values(updated_at=utcnow() - timedelta(hours=2))
        )
    assert remove_abandoned(store_db, backend_for(store_db)) == 2
    rows, parts, objects = stored(store_db, "checkpoints/")
    assert (rows, parts) == (1, 11) and checkpoints.read(store_db, second) == TENSORS + b"2"
    if isinstance(backend_for(store_db), ObjectParts):
        assert all(path.startswith(second) for path in objects)


def test_a_resumed_job_is_identical_to_an_uninterrupted_one(
    store_db, store_settings, job_id, monkeypatch
):
    """The first attempt dies after epoch 2 with its checkpoint in several parts; the
    second resumes at 3 and gets the same losses as an uninterrupted run."""
    original = kill_first_attempt_after(monkeypatch, epoch=2)
    with pytest.raises(SystemExit):
        run_training(store_db, store_settings, job_id, "a")
    assert row(store_db, job_id).epoch == 2
    assert stored(store_db, "checkpoints/")[1] > 1  # several parts
    with store_db.transaction() as session:
        session.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert run_training(store_db, store_settings, job_id, "b") == "succeeded"
    assert stored(store_db, "checkpoints/") == (0, 0, [])
    with store_db.transaction() as session:
        resumed = session.scalars(select(EpochMetric).order_by(EpochMetric.epoch)).all()
        assert session.scalar(select(ModelVersion)).metrics["resumed_from_epoch"] == 2

    monkeypatch.setattr(training_run, "record_epoch", original)
    with store_db.transaction() as session:
        session.execute(update(Job).values(status="queued", attempt=0, model_version=None))
        session.execute(delete(ModelVersion))
        session.execute(delete(EpochMetric))
    assert run_training(store_db, store_settings, job_id, "c") == "succeeded"
    with store_db.transaction() as session:
        again = session.scalars(select(EpochMetric).order_by(EpochMetric.epoch)).all()
    assert [(r.train_loss, r.val_loss) for r in again] == [
        (r.train_loss, r.val_loss) for r in resumed
    ]
    assert stored(store_db, "checkpoints/") == (0, 0, [])
