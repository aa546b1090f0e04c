"""Upload, list, read and delete datasets."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.config import Settings
from service.db.models import ACTIVE_STATUSES, Dataset, Job, new_id
from service.db.session import Database
from service.ml import DataError, tabular
from service.storage import DatabaseStorage
from service.usecases.errors import Conflict, NotFound


def upload_dataset(
    db: Database,
    settings: Settings,
    tenant: str,
    *,
    name: str | None,
    csv: bytes | None = None,
    records: Any = None,
) -> Dataset:
    """Parse, type and store a table given as CSV bytes or JSON records."""
    with db.transaction() as session:
        return create_dataset(session, settings, tenant, name=name, csv=csv, records=records)


def create_dataset(
    session: Session,
    settings: Settings,
    tenant: str,
    *,
    name: str | None,
    csv: bytes | None = None,
    records: Any = None,
) -> Dataset:
    """Like :func:`upload_dataset`, inside the caller's transaction."""
    if csv is not None:
        raw = tabular.read_csv(
            csv,
            max_rows=settings.max_rows,
            max_columns=settings.max_columns,
            max_cell_chars=settings.max_cell_chars,
        )
    else:
        raw = tabular.frame_from_records(
            records,
            max_rows=settings.max_rows,
            max_columns=settings.max_columns,
            max_cell_chars=settings.max_cell_chars,
        )
    if raw.shape[1] == 0:
        raise DataError("the records have no columns", "records")
    frame, columns = tabular.infer_columns(raw)
    data = tabular.to_parquet(frame)
    dataset_id = new_id()
    key = f"datasets/{dataset_id}.parquet"
    DatabaseStorage(session).put(key, data)
    dataset = Dataset(
        id=dataset_id,
        tenant=tenant,
        name=name or "dataset",
        n_rows=len(frame),
        n_columns=len(columns),
        columns=[asdict(c) for c in columns],
        blob_key=key,
        size_bytes=len(data),
    )
    session.add(dataset)
    session.flush()
    return dataset


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
        DatabaseStorage(session).delete(dataset.blob_key)
        session.delete(dataset)
