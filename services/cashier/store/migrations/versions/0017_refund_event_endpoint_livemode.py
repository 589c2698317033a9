"""Test and live (docs/test-mode.md): refunds, merchant events and webhook endpoints carry `livemode`.

- A refund always has its payment's mode: the `refunds_livemode` trigger sets it from the payment on insert, so
  every code path that makes a refund (merchant refunds, top-up refunds, checkout's automatic late-success refunds)
  gets it right without being told.
- An event has its payment's mode; its payload (the webhook body, `GET /v1/events`) gains a top-level `livemode`.
- A webhook endpoint receives only its mode's events. Endpoints made before are live unless their merchant has no
  live channel configuration (as for checkout sessions in 0016).

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("refunds", sa.Column("livemode", sa.Boolean))
    op.execute("UPDATE refunds r SET livemode = p.livemode FROM payments p WHERE p.id = r.payment_id")
    op.alter_column("refunds", "livemode", nullable=False)
    op.execute(
        """
        CREATE FUNCTION refunds_livemode() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            SELECT livemode INTO NEW.livemode FROM payments WHERE id = NEW.payment_id;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER refunds_livemode BEFORE INSERT ON refunds FOR EACH ROW EXECUTE FUNCTION refunds_livemode()"
    )
    op.add_column("merchant_events", sa.Column("livemode", sa.Boolean, nullable=False, server_default=sa.true()))
    op.execute(
        "UPDATE merchant_events e SET livemode = p.livemode, payload = e.payload || jsonb_build_object('livemode', "
        "p.livemode) FROM payments p WHERE p.id = e.payment_id"
    )
    op.execute(  # an event whose payment is gone: live, like everything made before modes
        "UPDATE merchant_events SET payload = payload || jsonb_build_object('livemode', livemode) "
        "WHERE NOT payload ? 'livemode'"
    )
    op.alter_column("merchant_events", "livemode", server_default=None)
    op.add_column("webhook_endpoints", sa.Column("livemode", sa.Boolean, nullable=False, server_default=sa.true()))
    op.execute(
        "UPDATE webhook_endpoints w SET livemode = false WHERE NOT EXISTS "
        "(SELECT 1 FROM merchant_channels mc WHERE mc.merchant_id = w.merchant_id AND mc.mode = 'live')"
    )
    op.alter_column("webhook_endpoints", "livemode", server_default=None)


def downgrade() -> None:
    op.drop_column("webhook_endpoints", "livemode")
    op.drop_column("merchant_events", "livemode")
    op.execute("DROP TRIGGER refunds_livemode ON refunds")
    op.execute("DROP FUNCTION refunds_livemode()")
    op.drop_column("refunds", "livemode")
