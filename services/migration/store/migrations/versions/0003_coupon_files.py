"""A run may carry a coupons file (unused coupons of the platform's users, imported into marketing).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE migration_run_files DROP CONSTRAINT migration_run_files_kind_check")
    op.execute(
        "ALTER TABLE migration_run_files ADD CONSTRAINT migration_run_files_kind_check"
        " CHECK (kind IN ('merchants', 'persons', 'balances', 'coupons'))"
    )


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
