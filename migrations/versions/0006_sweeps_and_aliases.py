"""hyperparameter sweeps (trials are jobs), early-stopped trials, model aliases"""

import sqlalchemy as sa
from alembic import op

from service.db.models import UTCDateTime

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(36), nullable=True),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("features", sa.JSON(), nullable=True),
        sa.Column("column_types", sa.JSON(), nullable=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("search", sa.JSON(), nullable=False),
        sa.Column("trials", sa.JSON(), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("max_parallel", sa.Integer(), nullable=False),
        sa.Column("early_stopping", sa.JSON(), nullable=False),
        sa.Column("promote_to", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_trials", sa.Integer(), nullable=False),
        sa.Column("winner_job_id", sa.String(36), nullable=True),
        sa.Column("winner_version", sa.Integer(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_sweeps_tenant", "sweeps", ["tenant"])
    op.create_index("ix_sweeps_status", "sweeps", ["status"])
    op.create_index("ix_sweeps_created_at", "sweeps", ["created_at"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("sweep_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("trial", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("stopped_early", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("stop_reason", sa.Text(), nullable=True))
    op.create_index("ix_jobs_sweep_id", "jobs", ["sweep_id"])
    op.create_table(
        "model_aliases",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant", "name", "alias", name="uq_model_aliases_tenant_name_alias"),
    )


def downgrade() -> None:
    op.drop_table("model_aliases")
    op.drop_index("ix_jobs_sweep_id", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("stop_reason")
        batch.drop_column("stopped_early")
        batch.drop_column("trial")
        batch.drop_column("sweep_id")
    op.drop_index("ix_sweeps_created_at", table_name="sweeps")
    op.drop_index("ix_sweeps_status", table_name="sweeps")
    op.drop_index("ix_sweeps_tenant", table_name="sweeps")
    op.drop_table("sweeps")
