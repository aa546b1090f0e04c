"""blobs.parts_sha256: a blob's SHA-256 of its parts' SHA-256 digests, in place of its bytes'

A blob written from now on keeps the SHA-256 of its parts' digests (32 bytes each, in
order) in ``parts_sha256``, and no ``sha256`` of its bytes: every part is hashed anyway
(each is checked before its bytes are handed out), and a second pass over every byte cost
an upload ~0.09 CPU-s per 160 MB, as much again on every whole read (bench/README.md).
It guards the same things: a part changed, missing, added or out of order no longer
matches. Blobs stored before keep ``sha256``, checked as before.

Code from before this migration skips the whole-blob check of a blob whose ``sha256`` is
NULL and still checks each part, so it reads the new blobs, and nothing needs rewriting
on a downgrade (or while an older worker runs beside a newer API).
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("parts_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("parts_sha256")
