"""blobs.sha256_of: what a blob's SHA-256 is taken of ("bytes", or "parts": its parts' digests)

A blob written from now on keeps the SHA-256 of its parts' SHA-256 digests (32 bytes
each, in order) instead of the SHA-256 of its bytes: every part is hashed anyway (each
is checked before its bytes are handed out), and a second pass over every byte cost an
upload ~0.09 CPU-s per 160 MB, as much again on every whole read (bench/README.md). It
guards the same things: a part changed, missing, added or out of order no longer
matches. Blobs stored before keep the hash of their bytes ("bytes").
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(
            sa.Column("sha256_of", sa.String(8), nullable=False, server_default="bytes")
        )


def downgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("sha256_of")
