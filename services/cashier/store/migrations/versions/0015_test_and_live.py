"""Test and live (docs/test-mode.md): channel configurations carry a mode, payments `livemode`.

A configuration is `test` when every endpoint it calls is a sandbox by the default rule of domain/modes.py (the
channels' public sandboxes; loopback, where the local sandboxes run, only in dev/test), else `live`; a configuration
mixing both is marked `live` here (the stricter side) and must be corrected by the platform. A payment made before
modes existed is live unless its channel's configuration is a test one (its money went to a sandbox): the API keys
made before are live too (gateway migration 0007), so their merchants keep seeing their real payments.

Revision ID: 0015
Revises: 0014
"""

import os

import sqlalchemy as sa
from alembic import op

from services.cashier.connectors.registry import channel_endpoints
from services.cashier.domain.modes import default_sandbox_hosts, is_sandbox

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("merchant_channels", sa.Column("mode", sa.Text, nullable=False, server_default="live"))
    op.create_check_constraint("merchant_channels_mode_known", "merchant_channels", "mode IN ('test', 'live')")
    sandbox_hosts = default_sandbox_hosts(os.environ.get("JUHE_CASHIER_ENV", os.environ.get("JUHE_ENV", "dev")))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT merchant_id, channel, config FROM merchant_channels")).all()
    for merchant_id, channel, config in rows:
        urls = channel_endpoints(channel, dict(config or {}))
        if urls and all(is_sandbox(u, sandbox_hosts) for u in urls):
            conn.execute(
                sa.text("UPDATE merchant_channels SET mode = 'test' WHERE merchant_id = :m AND channel = :c"),
                {"m": merchant_id, "c": channel},
            )
    op.alter_column("merchant_channels", "mode", server_default=None)
    op.add_column("payments", sa.Column("livemode", sa.Boolean, nullable=False, server_default=sa.true()))
    op.execute(
        "UPDATE payments p SET livemode = false FROM merchant_channels mc "
        "WHERE mc.merchant_id = p.merchant_id AND mc.channel = p.channel AND mc.mode = 'test'"
    )
    op.alter_column("payments", "livemode", server_default=None)


def downgrade() -> None:
    op.drop_column("payments", "livemode")
    op.drop_constraint("merchant_channels_mode_known", "merchant_channels", type_="check")
    op.drop_column("merchant_channels", "mode")
