"""train accuracy and throughput per epoch; the job's notes about its data"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.add_column(sa.Column("train_accuracy", sa.Float(), nullable=True))
        batch.add_column(sa.Column("samples_per_s", sa.Float(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("notes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("notes")
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.drop_column("samples_per_s")
        batch.drop_column("train_accuracy")
