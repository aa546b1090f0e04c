"""API key scopes (predict, read, train, admin); existing keys keep every scope"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"

ALL_SCOPES = "admin predict read train"


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("scopes", sa.String(64), nullable=False, server_default=ALL_SCOPES)
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scopes")
