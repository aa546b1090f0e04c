"""blobs in parts of a few tens of MB, with a content hash; 64-bit sizes"""

import hashlib

import sqlalchemy as sa
from alembic import op

from service.db.models import UTCDateTime

revision = "0009"
down_revision = "0008"

PART_SIZE = 32 * 1024 * 1024


def upgrade() -> None:
    op.create_table(
        "blob_parts",
        sa.Column("blob_key", sa.String(255), primary_key=True),
        sa.Column("index", sa.Integer(), primary_key=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
    )
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("parts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="ready"))
        batch.add_column(sa.Column("updated_at", UTCDateTime(), nullable=True))
        batch.alter_column("size", type_=sa.BigInteger(), existing_nullable=False)
    connection = op.get_bind()
    blobs = sa.table(
        "blobs",
        sa.column("key", sa.String),
        sa.column("data", sa.LargeBinary),
        sa.column("sha256", sa.String),
        sa.column("parts", sa.Integer),
        sa.column("updated_at", UTCDateTime()),
        sa.column("created_at", UTCDateTime()),
    )
    parts = sa.table(
        "blob_parts",
        sa.column("blob_key", sa.String),
        sa.column("index", sa.Integer),
        sa.column("size", sa.Integer),
        sa.column("sha256", sa.String),
        sa.column("data", sa.LargeBinary),
    )
    keys = connection.execute(sa.select(blobs.c.key)).scalars().all()
    for key in keys:  # one blob in memory at a time
        data = connection.execute(sa.select(blobs.c.data).where(blobs.c.key == key)).scalar_one()
        data = bytes(data or b"")
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
            blobs.update()
            .where(blobs.c.key == key)
            .values(
                sha256=hashlib.sha256(data).hexdigest(),
                parts=len(chunks),
                updated_at=blobs.c.created_at,
            )
        )
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("data")
        batch.alter_column("updated_at", existing_type=UTCDateTime(), nullable=False)
        batch.create_index("ix_blobs_updated_at", ["updated_at"])
    with op.batch_alter_table("datasets") as batch:
        batch.alter_column("size_bytes", type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.alter_column("size_bytes", type_=sa.Integer(), existing_nullable=False)
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("data", sa.LargeBinary(), nullable=True))
    connection = op.get_bind()
    blobs = sa.table("blobs", sa.column("key", sa.String), sa.column("data", sa.LargeBinary))
    parts = sa.table(
        "blob_parts",
        sa.column("blob_key", sa.String),
        sa.column("index", sa.Integer),
        sa.column("data", sa.LargeBinary),
    )
    keys = connection.execute(sa.select(blobs.c.key)).scalars().all()
    for key in keys:
        chunks = connection.execute(
            sa.select(parts.c.data).where(parts.c.blob_key == key).order_by(parts.c.index)
        ).scalars()
        data = b"".join(bytes(chunk or b"") for chunk in chunks)
        connection.execute(blobs.update().where(blobs.c.key == key).values(data=data))
    with op.batch_alter_table("blobs") as batch:
        batch.drop_index("ix_blobs_updated_at")
        batch.drop_column("updated_at")
        batch.drop_column("state")
        batch.drop_column("parts")
        batch.drop_column("sha256")
        batch.alter_column("size", type_=sa.Integer(), existing_nullable=False)
        batch.alter_column("data", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table("blob_parts")
