"""Tables of the settlement database (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.outbox_tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

# Settlement's own copy of the ledger accounts it may pay into or out of, built from
# `account.opened` events (a service never reads another service's tables).
ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("holder_id", Text, nullable=False, index=True),
    Column("currency", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("source_event_id", Text, nullable=False),
    # Counts applications of the event: the exactly-once tests assert it stays at 1.
    Column("applied_count", BigInteger, nullable=False, server_default="1"),
    Column("mirrored_seq", BigInteger, Identity(always=True), nullable=False),
    Column("mirrored_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("livemode", Boolean, nullable=False, server_default=text("true")),  # the account's book (0013)
)

# Who can receive a share of a split: a merchant (its merchant_pending account), the platform
# (platform_fee_income) or a partner (agent, teacher, driver: a merchant_pending account of its own).
receivers = Table(
    "receivers",
    metadata,
    Column("receiver_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # merchant | platform | partner
    Column("holder_id", Text, nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # migration 0007: the receiver's own identifiers at the channels, for channel profit sharing
    # {"wechatpay": {"type", "account", "name"?}, "alipay": {...}}
    Column("channel_accounts", JSONB),
)

# One rule per (merchant, business line); "" is the merchant's default line.
split_rules = Table(
    "split_rules",
    metadata,
    Column("rule_id", Text, primary_key=True),
    Column("merchant_id", Text, nullable=False),
    Column("business_line", Text, nullable=False, server_default=""),
    Column("shares", JSONB, nullable=False),
    Column("remainder_receiver_id", Text, nullable=False),
    Column("version", BigInteger, nullable=False, server_default="1"),
    # migration 0006: escrow (担保交易) holds the split until confirmed or the deadline passes
    Column("mode", Text, nullable=False, server_default="realtime"),  # realtime | escrow
    Column("auto_confirm_seconds", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("merchant_id", "business_line", name="split_rules_merchant_line"),
)

# The platform's rate charged to each merchant (the channel's cost comes with each payment event).
merchant_fee_rates = Table(
    "merchant_fee_rates",
    metadata,
    Column("merchant_id", Text, primary_key=True),
    Column("platform_fee_rate_bps", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Settlement's own record of payments (from `cashier.payments` events): what it splits, settles and
# reconciles. `out_trade_no` is the attempt the channel knows; `bill_date` is the China-time day.
payment_records = Table(
    "payment_records",
    metadata,
    Column("payment_id", Text, primary_key=True),
    Column("merchant_id", Text, nullable=False),
    Column("merchant_order_no", Text),
    Column("business_line", Text, nullable=False, server_default=""),
    Column("channel", Text),
    Column("out_trade_no", Text),
    Column("channel_trade_no", Text),
    Column("status", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("channel_fee_minor", BigInteger),
    Column("channel_fee_rate_bps", Integer),
    Column("platform_fee_rate_bps", Integer),
    Column("platform_fee_minor", BigInteger),
    Column("margin_minor", BigInteger),
    Column("refunded_minor", BigInteger, nullable=False, server_default="0"),
    Column("bill_date", Date),
    Column("succeeded_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("settle_date", Date),  # migration 0004: when the merchant's cycle settles it
    # migration 0007: from the payment request (docs/contracts.md §1): purpose, explicit split, channel profit sharing
    Column("purpose", Text, nullable=False, server_default="payment"),
    Column("explicit_split", JSONB),  # [{"receiver_id", "amount_minor"}] or null
    Column("profit_sharing", Boolean, nullable=False, server_default="false"),
    Column("livemode", Boolean, nullable=False, server_default=text("true")),  # migration 0013: test or live
    Index("payment_records_out_trade_no", "out_trade_no"),
    Index("payment_records_bill", "channel", "bill_date"),
    Index("payment_records_merchant", "merchant_id", "payment_id"),
)

refund_records = Table(
    "refund_records",
    metadata,
    Column("refund_id", Text, primary_key=True),
    Column("payment_id", Text, nullable=False, index=True),
    Column("merchant_id", Text, nullable=False),
    Column("channel", Text),
    Column("channel_refund_no", Text),
    Column("status", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("bill_date", Date),
    Column("succeeded_at", DateTime(timezone=True)),
    # migration 0008: when its effect was derived (NULL while its payment is not known as succeeded)
    Column("applied_at", DateTime(timezone=True)),
    Column("livemode", Boolean, nullable=False, server_default=text("true")),  # migration 0013: test or live
    Index("refund_records_bill", "channel", "bill_date"),
    Index("refund_records_unapplied", "payment_id", postgresql_where=text("applied_at IS NULL")),
)

# One split per payment and one reversal per refund (`source_key` = payment or refund id). Created in
# the inbox transaction of the event, posted to the ledger by the worker (key = split_id), so a crash
# between the two only delays it.
split_executions = Table(
    "split_executions",
    metadata,
    Column("split_id", Text, primary_key=True),
    Column("source_key", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),  # split | reversal
    Column("payment_id", Text, nullable=False, index=True),
    Column("refund_id", Text),
    Column("merchant_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("base_minor", BigInteger, nullable=False),
    Column("allocations", JSONB, nullable=False),  # receiver_id -> signed fen
    Column("remainder_receiver_id", Text, nullable=False),
    Column("status", Text, nullable=False),  # pending | posted | failed
    Column("ledger_transfer_id", Text),
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("posted_at", DateTime(timezone=True)),
    # migration 0006: escrow splits are a ledger hold (pending → held → confirming → posted, or → voiding →
    # voided on a refund before confirmation); base_offset_minor = split base already refunded when created
    Column("mode", Text, nullable=False, server_default="realtime"),
    Column("confirm_deadline", DateTime(timezone=True)),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("confirmed_by", Text),
    Column("base_offset_minor", BigInteger, nullable=False, server_default="0"),
    Column("livemode", Boolean, nullable=False, server_default=text("true")),  # migration 0013: test or live
    Index("split_executions_due", "status", "next_attempt_at"),
    Index("split_executions_deadline", "confirm_deadline", postgresql_where=text("status = 'held'")),
)

reconciliation_runs = Table(
    "reconciliation_runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("channel", Text, nullable=False),
    Column("merchant_id", Text, nullable=False),
    Column("bill_date", Date, nullable=False),
    Column("status", Text, nullable=False),  # running | finished | failed
    Column("counts", JSONB, nullable=False, server_default="{}"),
    Column("bill_lines", BigInteger, nullable=False, server_default="0"),
    Column("error", Text),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("livemode", Boolean, nullable=False, server_default=text("true")),  # migration 0013: test or live
    Index("reconciliation_runs_day", "channel", "bill_date"),
)

# Every line that is not simply matched (matched lines are only counted: a day has millions).
reconciliation_items = Table(
    "reconciliation_items",
    metadata,
    Column("item_id", BigInteger, Identity(always=True), primary_key=True),
    Column("run_id", Text, nullable=False, index=True),
    Column("outcome", Text, nullable=False),
    Column("resolution", Text, nullable=False),  # manual | cashier_requery
    Column("resolution_status", Text, nullable=False),  # open | requested | unavailable | resolved
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("payment_id", Text, index=True),
    Column("refund_id", Text),
    Column("merchant_order_no", Text, index=True),
    Column("channel_trade_no", Text),
    Column("juhe_amount_minor", BigInteger),
    Column("channel_amount_minor", BigInteger),
    Column("juhe_fee_minor", BigInteger),
    Column("channel_fee_minor", BigInteger),
    Column("juhe_status", Text),
    Column("channel_status", Text),
    Column("detail", Text, nullable=False, server_default=""),
)

# --- settlement cycles (migration 0004) ---

# A merchant's cycle; none = T+1 with the end of day as cutoff.
merchant_cycles = Table(
    "merchant_cycles",
    metadata,
    Column("holder_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # t_plus | d_plus | weekly
    Column("days", Integer, nullable=False, server_default="1"),
    Column("weekday", Integer, nullable=False, server_default="0"),
    Column("cutoff", Time, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Overrides of the weekday/weekend rule: public holidays (false) and make-up workdays (true).
calendar_days = Table(
    "calendar_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("business_day", Boolean, nullable=False),
    Column("name", Text, nullable=False, server_default=""),
)

# Every change settlement knows of to a holder's merchant_pending (2201), with the day it becomes due.
# A batch takes the due, unbatched entries of one holder; `source_key` makes each business event count once.
settlement_entries = Table(
    "settlement_entries",
    metadata,
    Column("entry_id", BigInteger, Identity(always=True), primary_key=True),
    Column("source_key", Text, nullable=False, unique=True),
    Column("holder_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),  # signed
    Column("due_date", Date, nullable=False),
    Column("kind", Text, nullable=False),  # payment | split | refund | reversal
    Column("payment_id", Text, nullable=False),
    Column("refund_id", Text),
    Column("batch_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("livemode", Boolean, nullable=False, server_default=text("true")),  # migration 0013: test or live
    Index("settlement_entries_open", "holder_id", "currency", "due_date", postgresql_where=text("batch_id IS NULL")),
    Index("settlement_entries_batch", "batch_id"),
)

settlement_batches = Table(
    "settlement_batches",
    metadata,
    Column("batch_id", Text, primary_key=True),
    Column("holder_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("cycle_date", Date, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("entry_count", Integer, nullable=False),
    Column("status", Text, nullable=False),  # built | posted
    Column("ledger_transfer_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("posted_at", DateTime(timezone=True)),
    Column("livemode", Boolean, nullable=False, server_default=text("true")),  # migration 0013: test or live
    UniqueConstraint("holder_id", "currency", "cycle_date", "livemode", name="settlement_batches_one_per_day"),
    Index("settlement_batches_holder", "holder_id", "batch_id"),  # migration 0007
)

# --- payouts (migration 0005) ---

# Payouts (划付) of settled funds to a merchant's bank account: `pending → succeeded | failed`.
# `instruction_transfer_id` is the §3.6 instruction (2202 → 2203); `submitted_at` when the bank accepted
# it (payout_no = payout_id, idempotent at the bank); `outcome_transfer_id` the paid/failed posting.
payouts = Table(
    "payouts",
    metadata,
    Column("payout_id", Text, primary_key=True),
    Column("holder_id", Text, nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("account_no", Text, nullable=False),
    Column("account_name", Text, nullable=False),
    Column("status", Text, nullable=False),  # pending_approval | pending | succeeded | failed | rejected
    Column("instruction_transfer_id", Text),
    Column("submitted_at", DateTime(timezone=True)),
    Column("bank_ref", Text),
    Column("bank_status", Text),
    Column("failure_code", Text),
    Column("outcome_transfer_id", Text),
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("rail", Text, nullable=False, server_default="bank"),  # bank | wechat_change | alipay_account (0010)
    Column("user_action", JSONB),  # what the payee must do to receive it (WeChat: package_info)
    # Maker-checker above the platform's threshold (migration 0012): the operator who approved or rejected it.
    Column("decided_by", Text),
    Column("decided_at", DateTime(timezone=True)),
    Column("decision_reason", Text),
    Column("livemode", Boolean, nullable=False, server_default=text("true")),  # migration 0013: test or live
    UniqueConstraint("holder_id", "idempotency_key", name="payouts_holder_key"),
    Index("payouts_due", "status", "next_attempt_at"),
    Index("payouts_holder", "holder_id", "payout_id"),  # migration 0007
    Index("payouts_awaiting_approval", "created_at", postgresql_where=text("status = 'pending_approval'")),
)

# --- wallet withdrawals and channel profit sharing (migration 0007) ---

# A wallet withdrawal (docs/contracts.md §3) paid out by the bank: one row per ledger wallet operation,
# `pending → succeeded | failed`; `ledger_outcome` = posted | voided once the wallet hold was finished.
withdrawals = Table(
    "withdrawals",
    metadata,
    Column("operation_id", Text, primary_key=True),
    Column("holder_id", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("fee_minor", BigInteger, nullable=False, server_default="0"),
    Column("currency", Text, nullable=False),
    Column("status", Text, nullable=False),  # pending | succeeded | failed
    Column("account_no", Text),
    Column("account_name", Text),
    Column("submitted_at", DateTime(timezone=True)),
    Column("bank_ref", Text),
    Column("bank_status", Text),
    Column("failure_code", Text),
    Column("ledger_outcome", Text),  # posted | voided
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("rail", Text, nullable=False, server_default="bank"),  # migration 0010
    Column("user_action", JSONB),
    Index("withdrawals_due", "status", "next_attempt_at"),
)

# A channel profit-sharing order (docs/contracts.md §2) for the partner shares of one final split:
# `pending → succeeded | failed`; `ledger_transfer_id` is the §3.12 posting of a success.
profit_sharing_orders = Table(
    "profit_sharing_orders",
    metadata,
    Column("order_no", Text, primary_key=True),
    Column("payment_id", Text, nullable=False),
    Column("split_id", Text, nullable=False),
    Column("merchant_id", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("receivers", JSONB, nullable=False),
    Column("status", Text, nullable=False),  # pending | succeeded | failed
    Column("channel_status", Text),
    Column("channel_order_id", Text),
    Column("result", JSONB),
    Column("ledger_transfer_id", Text),
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    UniqueConstraint("split_id", name="profit_sharing_orders_split"),
    Index("profit_sharing_orders_due", "status", "next_attempt_at"),
    Index("profit_sharing_orders_payment", "payment_id"),
)

# --- settlement ↔ ledger consistency (migration 0008) ---

# Each run of the cross-service check: `differences` = every (holder, currency) whose two sides differed in
# the run's last reading; `mismatches` = those that also differed in the reading before (confirmed).
consistency_checks = Table(
    "consistency_checks",
    metadata,
    Column("check_id", BigInteger, Identity(always=True), primary_key=True),
    Column("checked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("ok", Boolean, nullable=False),
    Column("holders_checked", Integer, nullable=False),
    Column("mismatches", JSONB, nullable=False),
    Column("differences", JSONB, nullable=False),
)

# --- reconciliation exceptions pool (migration 0011) ---

# The work state of a reconciliation item a person handles; no row = `open` (nothing done yet).
reconciliation_exceptions = Table(
    "reconciliation_exceptions",
    metadata,
    Column("item_id", BigInteger, primary_key=True),
    Column("state", Text, nullable=False),  # open | assigned | resolved
    Column("assignee", Text),
    Column("resolution_reason", Text),
    Column("resolved_by", Text),
    Column("resolved_at", DateTime(timezone=True)),
    Column("requery_count", Integer, nullable=False, server_default="0"),
    Column("last_requery", JSONB),
    Column("last_requery_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Each item's trail: who assigned, re-queried (with the cashier's answer) or resolved it, and when.
reconciliation_exception_actions = Table(
    "reconciliation_exception_actions",
    metadata,
    Column("action_id", BigInteger, Identity(always=True), primary_key=True),
    Column("item_id", BigInteger, nullable=False),
    Column("action", Text, nullable=False),  # assigned | requeried | resolved
    Column("actor", Text, nullable=False),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
