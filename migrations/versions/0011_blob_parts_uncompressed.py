"""blob_parts.data stored as it is on PostgreSQL (STORAGE EXTERNAL: no pglz attempt)

A part is already compressed where it can be (Parquet pages, safetensors of floats),
and PostgreSQL's default for a bytea (EXTENDED) tries pglz on every value over 2 kB:
for the 4 MiB parts of an uploaded table that cost about 3 CPU-seconds of the database
server per 160 MB stored, for nothing saved (bench/README.md, "ingest.py"). EXTERNAL
still moves the value out of line (TOAST), uncompressed. Values stored before keep
their form; SQLite has no such setting.
"""

from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE blob_parts ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE blob_parts ALTER COLUMN data SET STORAGE EXTENDED")
