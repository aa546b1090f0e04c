"""checkpoint tensors move from checkpoints.tensors into blobs in parts (checkpoints.blob_key)"""

import hashlib
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from service.db.models import UTCDateTime

revision = "0010"
down_revision = "0009"

PART_SIZE = 32 * 1024 * 1024

blobs = sa.table(
    "blobs",
    sa.column("key", sa.String),
    sa.column("size", sa.BigInteger),
    sa.column("sha256", sa.String),
    sa.column("parts", sa.Integer),
    sa.column("state", sa.String),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
parts = sa.table(
    "blob_parts",
    sa.column("blob_key", sa.String),
    sa.column("index", sa.Integer),
    sa.column("size", sa.Integer),
    sa.column("sha256", sa.String),
    sa.column("data", sa.LargeBinary),
)
checkpoints = sa.table(
    "checkpoints",
    sa.column("job_id", sa.String),
    sa.column("tensors", sa.LargeBinary),
    sa.column("blob_key", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("blob_key", sa.String(255), nullable=True))
    connection = op.get_bind()
    now = datetime.now(UTC)
    jobs = connection.execute(sa.select(checkpoints.c.job_id)).scalars().all()
    for job_id in jobs:  # one checkpoint in memory at a time
        data = connection.execute(
            sa.select(checkpoints.c.tensors).where(checkpoints.c.job_id == job_id)
        ).scalar_one()
        data = bytes(data or b"")
        # The parts stay in blob_parts.data whatever TRAINSERVE_STORAGE_URL says: reads
        # take a part's bytes from there when they are there.
        key = f"checkpoints/{job_id}/{uuid.uuid4()}.safetensors"
        chunks = [data[i : i + PART_SIZE] for i in range(0, len(data), PART_SIZE)]
        for index, chunk in enumerate(chunks):
            connection.execute(
                parts.insert().values(
                    blob_key=key,
                    index=index,
                    size=len(chunk),
                    sha256=hashlib.sha256(chunk).hexdigest(),
                    data=chunk,
                )
            )
        connection.execute(
            blobs.insert().values(
                key=key,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                parts=len(chunks),
                state="ready",
                created_at=now,
                updated_at=now,
            )
        )
        connection.execute(
            checkpoints.update().where(checkpoints.c.job_id == job_id).values(blob_key=key)
        )
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("tensors")
        batch.alter_column("blob_key", existing_type=sa.String(255), nullable=False)


def downgrade() -> None:
    """Tensors whose parts are all in the database go back into the row. A checkpoint with
    parts in an object store (unreadable here) is dropped: its job's next attempt starts
    again from epoch 0 (the claim rewinds the epoch rows). Its blob is left ``writing``
    and old, so the upkeep loop of revision 0009 removes its objects."""
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("tensors", sa.LargeBinary(), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.select(checkpoints.c.job_id, checkpoints.c.blob_key)).all()
    for job_id, key in rows:
        count = connection.execute(
            sa.select(blobs.c.parts).where(blobs.c.key == key)
        ).scalar_one_or_none()
        chunks = (
            connection.execute(
                sa.select(parts.c.data).where(parts.c.blob_key == key).order_by(parts.c.index)
            )
            .scalars()
            .all()
        )
        if count is not None and len(chunks) == count and all(c is not None for c in chunks):
            data = b"".join(bytes(chunk) for chunk in chunks)
            connection.execute(
                checkpoints.update().where(checkpoints.c.job_id == job_id).values(tensors=data)
            )
            connection.execute(parts.delete().where(parts.c.blob_key == key))
            connection.execute(blobs.delete().where(blobs.c.key == key))
        else:
            connection.execute(checkpoints.delete().where(checkpoints.c.job_id == job_id))
            connection.execute(
                blobs.update()
                .where(blobs.c.key == key)
                .values(state="writing", updated_at=datetime(2000, 1, 1, tzinfo=UTC))
            )
    # Blobs discarded but not yet removed: revision 0009's upkeep loop knows no
    # ``deleting`` state, but removes old ``writing`` blobs.
    connection.execute(
        blobs.update()
        .where(blobs.c.state == "deleting")
        .values(state="writing", updated_at=datetime(2000, 1, 1, tzinfo=UTC))
    )
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("blob_key")
        batch.alter_column("tensors", existing_type=sa.LargeBinary(), nullable=False)
