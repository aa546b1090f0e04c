"""tenants on datasets, jobs and model versions; API keys"""

import sqlalchemy as sa
from alembic import op

from service.db.models import UTCDateTime

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    for table in ("datasets", "jobs", "model_versions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("tenant", sa.String(64), nullable=False, server_default="default")
            )
        op.create_index(f"ix_{table}_tenant", table, ["tenant"])
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("idempotency_key", type_=sa.String(320), existing_nullable=True)
    op.execute(
        "UPDATE jobs SET idempotency_key = 'default:' || idempotency_key "
        "WHERE idempotency_key IS NOT NULL"
    )
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_constraint("uq_model_versions_name_version", type_="unique")
        batch.create_unique_constraint(
            "uq_model_versions_tenant_name_version", ["tenant", "name", "version"]
        )


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_constraint("uq_model_versions_tenant_name_version", type_="unique")
        batch.create_unique_constraint("uq_model_versions_name_version", ["name", "version"])
    op.execute(
        "UPDATE jobs SET idempotency_key = substr(idempotency_key, length(tenant) + 2) "
        "WHERE idempotency_key IS NOT NULL"
    )
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("idempotency_key", type_=sa.String(255), existing_nullable=True)
    for table in ("model_versions", "jobs", "datasets"):
        op.drop_index(f"ix_{table}_tenant", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tenant")
    op.drop_index("ix_api_keys_tenant", table_name="api_keys")
    op.drop_table("api_keys")
