"""A merchant's channel configurations test and live side by side: one per (merchant, channel, mode), so a merchant
can keep its WeChat Pay sandbox configuration for its test key while its live one serves its live key (the primary
key was (merchant, channel): one configuration, hence one mode, per channel). Existing rows keep their mode.

The downgrade keeps, per (merchant, channel), the live configuration where there are both (the test one is dropped).

Revision ID: 0020
Revises: 0019
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE merchant_channels DROP CONSTRAINT merchant_channels_pkey")
    op.execute("ALTER TABLE merchant_channels ADD PRIMARY KEY (merchant_id, channel, mode)")


def downgrade() -> None:
    op.execute(
        "DELETE FROM merchant_channels t WHERE t.mode = 'test' AND EXISTS (SELECT 1 FROM merchant_channels l "
        "WHERE l.merchant_id = t.merchant_id AND l.channel = t.channel AND l.mode = 'live')"
    )
    op.execute("ALTER TABLE merchant_channels DROP CONSTRAINT merchant_channels_pkey")
    op.execute("ALTER TABLE merchant_channels ADD PRIMARY KEY (merchant_id, channel)")
