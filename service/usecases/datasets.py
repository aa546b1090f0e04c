"""Upload, list, read and delete datasets."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.config import Settings
from service.db.models import ACTIVE_STATUSES, Dataset, Job, new_id
from service.db.session import Database
from service.ml import DataError, ingest, tabular
from service.storage import DISCARDED, BlobUpload, backend_for, remove_discarded, storage
from service.usecases.errors import Conflict, NotFound

# An uploaded table's parts. Smaller than storage's default: storing one part holds the
# GIL for a while (psycopg's bytea parameter: 20-50 ms for 32 MiB, under 8 ms for 4 MiB),
# and an upload runs in the threads of the processes that answer predicts.
UPLOAD_PART_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class TableUpload:
    """A table to store: streamed from ``source`` in ``fmt`` (CSV, Parquet or JSON Lines),
    or given as JSON ``records``; ``column_types`` overrides inferred types by name.
    ``named``, if given, tells the name once ``source`` has been read (a form's fields
    after its file), and may refuse the upload."""

    name: str | None
    source: BinaryIO | None = None
    fmt: str = "csv"
    records: Any = None
    column_types: dict[str, str] | None = None
    named: Callable[[], str | None] | None = None

    @classmethod
    def of_csv(cls, name: str | None, csv: bytes) -> TableUpload:
        """A CSV table held in memory."""
        return cls(name, io.BytesIO(csv))


def upload_dataset(db: Database, settings: Settings, tenant: str, table: TableUpload) -> Dataset:
    """Parse, type and store ``table``. Nothing is stored unless all of it is."""
    with staged_dataset(db, settings, tenant, table) as store:
        with db.transaction() as session:
            return store(session)


@contextmanager
def staged_dataset(
    db: Database, settings: Settings, tenant: str, table: TableUpload
) -> Iterator[Callable[[Session], Dataset]]:
    """Stream the table into storage (parts committed as they fill, no transaction held),
    then yield ``store(session)``, which adds the dataset row and marks its blob ready in
    the caller's transaction. Any failure, in the block or in that transaction, removes
    every part written."""
    source, fmt = table.source, table.fmt
    if table.records is not None:
        source, fmt = io.BytesIO(_records_parquet(settings, table.records)), "parquet"
    dataset_id = new_id()
    key = f"datasets/{dataset_id}.parquet"
    limits = ingest.Limits(
        max_rows=settings.max_rows,
        max_columns=settings.max_columns,
        max_cell_chars=settings.max_cell_chars,
        count_limit=max(settings.max_categories, settings.max_classes),
    )
    # Parts stored by a thread of their own, beside the Parquet writer (bench/README.md).
    with BlobUpload(
        db, backend_for(db), key, part_size=UPLOAD_PART_BYTES, background=True
    ) as upload:
        ingested = ingest.ingest(
            source, upload, fmt=fmt, limits=limits, column_types=table.column_types
        )
        upload.close()
        name = table.named() if table.named is not None else table.name

        def store(session: Session) -> Dataset:
            dataset = Dataset(
                id=dataset_id,
                tenant=tenant,
                name=name or "dataset",
                n_rows=ingested.n_rows,
                n_columns=len(ingested.columns),
                columns=ingested.columns,
                blob_key=key,
                size_bytes=upload.size,
            )
            session.add(dataset)
            upload.commit(session)
            session.flush()
            return dataset

        yield store


def _records_parquet(settings: Settings, records: Any) -> bytes:
    """JSON records as a typed Parquet file (small: the request body held them)."""
    raw = tabular.frame_from_records(
        records,
        max_rows=settings.max_rows,
        max_columns=settings.max_columns,
        max_cell_chars=settings.max_cell_chars,
    )
    if raw.shape[1] == 0:
        raise DataError("the records have no columns", "records")
    frame, _ = tabular.infer_columns(raw)
    return tabular.to_parquet(frame)


def list_datasets(db: Database, tenant: str, *, limit: int, offset: int) -> list[Dataset]:
    """The tenant's datasets, newest first."""
    with db.transaction() as session:
        query = (
            select(Dataset)
            .where(Dataset.tenant == tenant)
            .order_by(Dataset.created_at.desc(), Dataset.id)
        )
        return list(session.scalars(query.limit(limit).offset(offset)))


def get_dataset(db: Database, tenant: str, dataset_id: str) -> Dataset:
    with db.transaction() as session:
        return find_dataset(session, tenant, dataset_id)


def find_dataset(session: Session, tenant: str, dataset_id: str, *, lock: bool = False) -> Dataset:
    """The tenant's dataset; another tenant's is as absent as a missing one.

    ``lock`` takes a row lock (PostgreSQL), so a job submitted for the dataset and the
    dataset's deletion cannot interleave.
    """
    dataset = session.get(Dataset, dataset_id, with_for_update=lock)
    if dataset is None or dataset.tenant != tenant:
        raise NotFound(f"no dataset with id {dataset_id!r}")
    return dataset


def delete_dataset(db: Database, tenant: str, dataset_id: str) -> None:
    """Delete a dataset no queued or running job needs; finished jobs keep their history."""
    with db.transaction() as session:
        discarded = session.info.setdefault(DISCARDED, [])
        dataset = find_dataset(session, tenant, dataset_id, lock=True)
        busy = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.dataset_id == dataset_id, Job.status.in_(ACTIVE_STATUSES))
        )
        if busy:
            raise Conflict(
                f"dataset {dataset_id!r} is used by {busy} queued or running job(s); "
                "cancel them or wait for them to finish"
            )
        session.execute(update(Job).where(Job.dataset_id == dataset_id).values(dataset_id=None))
        # Its parts go once the row's deletion has committed (objects removed before a
        # rollback would leave the dataset without its bytes).
        storage(session, db).discard(dataset.blob_key)
        session.delete(dataset)
    remove_discarded(db, backend_for(db), discarded)
