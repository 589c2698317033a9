"""Webhook signing secrets sealed at rest: the merchant's webhook secret and each webhook endpoint's current and
previous secrets become AES-256-GCM sealed values (libs/common/sealing.py, the cashier's `secrets_encryption_key`
ring, each bound to its row's id), and the plain columns go. The cashier must sign with them, so they are sealed
(recoverable with the key, kept outside the database), not hashed.

The existing rows are sealed here, with the key ring of this process's cashier settings (JUHE_CASHIER_SECRETS_*):
the migration must run with the same settings as the cashier (deploy/migrate.py reads them the same way).

Revision ID: 0023
Revises: 0022
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from libs.common.sealing import Sealer
from services.cashier.config import Settings

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

BATCH_ROWS = 500  # rows read and rewritten per statement pair: memory stays bounded however many merchants


def _sealer() -> Sealer:
    s = Settings()
    return Sealer.from_settings(
        s.secrets_encryption_key, key_id=s.secrets_encryption_key_id, retired=s.secrets_retired_keys
    )


def _rewrite(table: str, key: str, columns: dict[str, str], convert: Any) -> None:
    """Every row of `table`, in batches by `key`: each `source -> target` column pair converted by
    `convert(value, row_id)` (None stays None)."""
    bind = op.get_bind()
    sources = ", ".join(columns)
    assignments = ", ".join(f"{target} = :{target}" for target in columns.values())
    last = ""
    while True:
        rows = bind.execute(
            sa.text(f"SELECT {key}, {sources} FROM {table} WHERE {key} > :last ORDER BY {key} LIMIT :n"),
            {"last": last, "n": BATCH_ROWS},
        ).all()
        if not rows:
            return
        for row in rows:
            row_id = row[0]
            values = {
                target: None if row[i + 1] is None else convert(row[i + 1], row_id)
                for i, target in enumerate(columns.values())
            }
            bind.execute(
                sa.text(f"UPDATE {table} SET {assignments} WHERE {key} = :row_id"), {**values, "row_id": row_id}
            )
        last = rows[-1][0]


def upgrade() -> None:
    sealer = _sealer()
    op.add_column("merchants", sa.Column("webhook_secret_sealed", sa.LargeBinary))
    op.add_column("webhook_endpoints", sa.Column("secret_sealed", sa.LargeBinary))
    op.add_column("webhook_endpoints", sa.Column("previous_secret_sealed", sa.LargeBinary))

    def seal(value: str, row_id: str) -> bytes:
        return sealer.seal(value, row_id=row_id)

    _rewrite("merchants", "merchant_id", {"webhook_secret": "webhook_secret_sealed"}, seal)
    _rewrite("webhook_endpoints", "id", {"secret": "secret_sealed", "previous_secret": "previous_secret_sealed"}, seal)
    op.alter_column("merchants", "webhook_secret_sealed", nullable=False)
    op.alter_column("webhook_endpoints", "secret_sealed", nullable=False)
    op.drop_column("merchants", "webhook_secret")
    op.drop_column("webhook_endpoints", "secret")
    op.drop_column("webhook_endpoints", "previous_secret")


def downgrade() -> None:
    sealer = _sealer()
    op.add_column("merchants", sa.Column("webhook_secret", sa.Text))
    op.add_column("webhook_endpoints", sa.Column("secret", sa.Text))
    op.add_column("webhook_endpoints", sa.Column("previous_secret", sa.Text))

    def unseal(value: bytes, row_id: str) -> str:
        return sealer.open(value, row_id=row_id)

    _rewrite("merchants", "merchant_id", {"webhook_secret_sealed": "webhook_secret"}, unseal)
    _rewrite(
        "webhook_endpoints", "id", {"secret_sealed": "secret", "previous_secret_sealed": "previous_secret"}, unseal
    )
    op.alter_column("merchants", "webhook_secret", nullable=False)
    op.alter_column("webhook_endpoints", "secret", nullable=False)
    op.drop_column("merchants", "webhook_secret_sealed")
    op.drop_column("webhook_endpoints", "secret_sealed")
    op.drop_column("webhook_endpoints", "previous_secret_sealed")
