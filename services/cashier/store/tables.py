"""Tables of the cashier database (SQLAlchemy Core).

Money columns are BIGINT minor units. Status columns only change through the compare-and-set
functions in store/payments.py, store/refunds.py and store/webhooks.py.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.outbox_tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

ID = 41  # libs.common.ids.ID_MAX_LENGTH

merchants = Table(
    "merchants",
    metadata,
    Column("merchant_id", String(64), primary_key=True),
    # Sealed (AES-256-GCM, the cashier's secrets key ring, bound to merchant_id; migration 0023): it signs webhooks.
    Column("webhook_secret_sealed", LargeBinary, nullable=False),
    Column("notify_url", Text),  # default merchant webhook URL when a payment names none
    # Origins allowed to frame the hosted checkout (juhe.js; migration 0014): its CSP frame-ancestors.
    Column("checkout_origins", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

merchant_channels = Table(
    "merchant_channels",
    metadata,
    Column("merchant_id", String(64), ForeignKey("merchants.merchant_id"), primary_key=True),
    Column("channel", String(32), primary_key=True),  # the connector name: wechatpay, alipay
    Column("priority", Integer, nullable=False, server_default=text("100")),  # fallback order, lower first
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("config", JSONB, nullable=False),  # the connector's config (keys, base URL); never returned by the API
    # test | live (docs/test-mode.md, domain/modes.py): a test config points only at sandboxes and serves only test
    # payments, a live one only real channels and live payments; a merchant may hold both side by side (0020).
    Column("mode", Text, primary_key=True),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

payments = Table(
    "payments",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("merchant_id", String(64), nullable=False),
    Column("merchant_order_no", String(64), nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", Text, nullable=False),
    Column("scene", String(16), nullable=False),
    Column("payer", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("livemode", Boolean, nullable=False),  # made with a live key (or a live caller); test otherwise
    Column("notify_url", Text),
    Column("return_url", Text),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", String(16), nullable=False),
    Column("current_attempt_id", String(ID)),
    Column("channel", String(32)),
    Column("route_id", String(64)),
    Column("fee_minor", BigInteger),
    Column("fee_rate_bps", Integer),
    # What the platform charges the merchant for this payment, fixed at creation (migration 0003).
    Column("platform_fee_minor", BigInteger, nullable=False, server_default="0"),
    # The split check and purpose (docs/contracts.md §1; migration 0004): what the money is for, whose wallet a
    # top-up credits, the merchant's explicit split (checked by settlement at creation) and whether the channel
    # freezes it for sharing.
    Column("purpose", String(16), nullable=False, server_default=text("'payment'")),
    Column("wallet_holder_id", String(64)),
    Column("split", JSONB),
    Column("profit_sharing", Boolean, nullable=False, server_default=text("false")),
    # The ordered candidates chosen at creation ([{channel, route_id, fee_minor, fee_rate_bps}], migration
    # 0006): a re-drive after a crash fails over through the same list. NULL on older payments.
    Column("candidates", JSONB),
    # A coupon redeemed on the payment (migration 0010): `amount_minor` is what the channel is asked for (the
    # discounted amount), `order_amount_minor` the order's own, `coupon` marketing's lock and funding split.
    Column("order_amount_minor", BigInteger),
    Column("discount_minor", BigInteger, nullable=False, server_default=text("0")),
    Column("coupon", JSONB),
    # The channel's own coupons on the success (migration 0018; connectors/base.py channel_discount_summary).
    Column("channel_discount", JSONB),
    # A wallet payment's {cash_minor, bonus_minor} on the success (migration 0021; connectors/wallet).
    Column("wallet_split", JSONB),
    Column("channel_trade_no", String(64)),
    Column("payer_action", JSONB),
    Column("expire_at", DateTime(timezone=True), nullable=False),
    Column("succeeded_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("failed_at", DateTime(timezone=True)),
    Column("failure_code", String(64)),
    Column("failure_message", Text),
    Column("late_success", Boolean, nullable=False, server_default=text("false")),
    Column("refund_reserved_minor", BigInteger, nullable=False, server_default=text("0")),  # succeeded + pending
    Column("refunded_minor", BigInteger, nullable=False, server_default=text("0")),  # succeeded only
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("merchant_id", "merchant_order_no", name="uq_payments_merchant_order"),
    CheckConstraint("(purpose = 'wallet_topup') = (wallet_holder_id IS NOT NULL)", name="ck_payments_topup_holder"),
    Index("ix_payments_merchant_created", "merchant_id", "id"),
    Index("ix_payments_merchant_amount", "merchant_id", "amount_minor", "id"),  # search by amount (migration 0019)
    Index("ix_payments_open_expiry", "expire_at", postgresql_where=text("status IN ('created', 'processing')")),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("payment_id", String(ID), ForeignKey("payments.id"), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("route_id", String(64)),
    Column("fee_minor", BigInteger),
    Column("fee_rate_bps", Integer),
    Column("out_trade_no", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("channel_trade_no", String(64)),
    Column("payer_action", JSONB),
    Column("failure_code", String(64)),
    Column("failure_message", Text),
    Column("retryable", Boolean),
    Column("duplicate_success", Boolean, nullable=False, server_default=text("false")),
    Column("latency_ms", Integer),
    Column("poll_count", Integer, nullable=False, server_default=text("0")),
    Column("next_poll_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    UniqueConstraint("payment_id", "seq", name="uq_attempts_payment_seq"),
    Index("ix_attempts_poll", "next_poll_at", postgresql_where=text("status = 'processing'")),
    # A `created` attempt's next_poll_at is its driver's lease: past it, the worker re-drives (migration 0006).
    Index("ix_attempts_redrive", "next_poll_at", postgresql_where=text("status = 'created'")),
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("payment_id", String(ID), ForeignKey("payments.id"), nullable=False),
    # Always its payment's mode: set by the database on insert (trigger refunds_livemode, migration 0017), so no
    # code path that makes a refund can give it another (docs/test-mode.md).
    Column("livemode", Boolean, nullable=False),
    Column("attempt_id", String(ID), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("merchant_refund_no", String(64)),
    Column("request_sha256", String(64), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", Text),
    Column("status", String(16), nullable=False),
    Column("channel_refund_no", String(64)),
    # A wallet refund's {cash_minor, bonus_minor, platform_minor}: where it went back (migration 0021).
    Column("wallet_split", JSONB),
    Column("failure_code", String(64)),
    Column("failure_message", Text),
    Column("poll_count", Integer, nullable=False, server_default=text("0")),
    Column("next_poll_at", DateTime(timezone=True)),
    Column("succeeded_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("merchant_id", "merchant_refund_no", name="uq_refunds_merchant_refund"),
    # The request's Idempotency-Key when it names no merchant refund number (migration 0008): a retry that
    # reaches the cashier again (the gateway freed the key after a 5xx) finds the refund it already made.
    Column("request_key", String(255)),
    UniqueConstraint("merchant_id", "request_key", name="uq_refunds_request_key"),
    Index("ix_refunds_payment", "payment_id", "id"),
    Index("ix_refunds_poll", "next_poll_at", postgresql_where=text("status = 'pending'")),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),  # from webhook_delivery_seq: order per payment
    Column("merchant_id", String(64), nullable=False),
    Column("payment_id", String(ID), nullable=False),  # ordering key, refunds included
    Column("event_id", String(ID), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("url", Text, nullable=False),
    # The merchant's webhook endpoint it goes to (migration 0011); NULL for a notify_url delivery (signed with
    # the merchant's secret). Order is kept per (payment, endpoint): a failing endpoint never holds up another.
    Column("endpoint_id", String(ID)),
    Column("body", Text, nullable=False),  # the exact bytes signed and sent (UTF-8 JSON)
    Column("status", String(16), nullable=False),
    Column("attempt_count", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("delivered_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index("ix_webhook_deliveries_payment", "payment_id", "seq"),
    # An endpoint's deliveries newest first (the merchant console's endpoint page, migration 0022).
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "seq", postgresql_where=text("endpoint_id IS NOT NULL")),
)

# Merchant webhook endpoints (migration 0011): several per merchant, each with its event types and its own
# signing secret; during a rotation's overlap window the previous secret signs too.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("merchant_id", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("description", Text),
    Column("enabled_events", JSONB, nullable=False),  # list of event types, or ["*"]
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    # Sealed like the merchant's webhook secret, both bound to the endpoint's id (migration 0023).
    Column("secret_sealed", LargeBinary, nullable=False),
    # Made with a test or a live key: it receives only that mode's events (docs/test-mode.md, migration 0017).
    Column("livemode", Boolean, nullable=False),
    Column("previous_secret_sealed", LargeBinary),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_webhook_endpoints_merchant", "merchant_id", "created_at"),
)

# Every event a merchant could receive (migration 0011), written with the state change whether or not any
# URL is set: `GET /v1/events` reads it, so a missed webhook can always be fetched. `payload` is the webhook
# body ({"id", "type", "created_at", "livemode", "data"}).
merchant_events = Table(
    "merchant_events",
    metadata,
    Column("id", String(ID), primary_key=True),  # the event id (Juhe-Event-Id)
    Column("seq", BigInteger, nullable=False, unique=True),  # from merchant_event_seq: the list order and cursor
    Column("merchant_id", String(64), nullable=False),
    Column("type", String(64), nullable=False),
    Column("payment_id", String(ID), nullable=False),
    Column("livemode", Boolean, nullable=False),  # its payment's mode (docs/test-mode.md, migration 0017)
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_merchant_events_merchant", "merchant_id", "seq"),
    Index("ix_merchant_events_merchant_type", "merchant_id", "type", "seq"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("delivery_id", String(ID), ForeignKey("webhook_deliveries.id"), nullable=False),
    Column("attempt_no", Integer, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
    Column("attempted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_webhook_attempts_delivery", "delivery_id", "id"),
)

# Channel profit-sharing orders (docs/contracts.md §2, migration 0005). Idempotent by (payment_id, order_no);
# `out_order_no` is what the channel sees (WeChat out_order_no, Alipay out_request_no): unique per cashier.
profit_sharing_orders = Table(
    "profit_sharing_orders",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("payment_id", String(ID), ForeignKey("payments.id"), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("order_no", String(64), nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("channel_trade_no", String(64), nullable=False),  # WeChat transaction_id / Alipay trade_no
    Column("out_order_no", String(64), nullable=False),
    Column("finish", Boolean, nullable=False),  # release what is not shared to the merchant
    Column("status", String(16), nullable=False),  # processing | succeeded | failed
    Column("receivers", JSONB, nullable=False),  # the request's lines plus each line's status, fail_reason
    Column("channel_order_id", String(64)),
    Column("submitted_at", DateTime(timezone=True)),  # the channel accepted the order (else: submit again)
    Column("failure_code", String(64)),
    Column("failure_message", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("payment_id", "order_no", name="uq_profit_sharing_orders_payment_order"),
    UniqueConstraint("out_order_no", name="uq_profit_sharing_orders_out_order_no"),
)
