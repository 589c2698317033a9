"""Tables of the marketing database (SQLAlchemy Core).

Budget exactness lives in the schema: `coupon_stocks.remaining_*` carry CHECK (>= 0) and are only ever
changed by one conditional UPDATE; per-user and per-day limits are counter rows with a primary key,
incremented by one conditional upsert. See README "Budget design"."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.outbox_tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)


def _now() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


campaigns = Table(
    "campaigns",
    metadata,
    Column("campaign_id", Text, primary_key=True),
    Column("owner_merchant_id", Text),  # NULL: the platform's own campaign
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    _now(),
)

coupon_stocks = Table(
    "coupon_stocks",
    metadata,
    Column("stock_id", Text, primary_key=True),
    Column("campaign_id", Text, ForeignKey("campaigns.campaign_id"), nullable=False),
    Column("owner_merchant_id", Text),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("discount_kind", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("amount_off_minor", BigInteger),
    Column("percent_off_bps", Integer),
    Column("discount_cap_minor", BigInteger),
    Column("threshold_minor", BigInteger, nullable=False),
    Column("face_value_minor", BigInteger, nullable=False),
    Column("valid_from", DateTime(timezone=True)),
    Column("valid_until", DateTime(timezone=True)),
    Column("valid_days_after_claim", Integer),
    Column("merchant_ids", ARRAY(Text), nullable=False),
    Column("store_ids", ARRAY(Text), nullable=False),
    Column("scenes", ARRAY(Text), nullable=False),
    Column("payment_methods", ARRAY(Text), nullable=False),
    Column("funding_party", Text, nullable=False),
    Column("platform_share_bps", Integer, nullable=False),
    Column("refund_policy", Text, nullable=False),
    Column("budget_count", BigInteger, nullable=False),
    Column("budget_minor", BigInteger, nullable=False),
    Column("remaining_count", BigInteger, nullable=False),
    Column("remaining_budget_minor", BigInteger, nullable=False),
    Column("per_user_limit", Integer, nullable=False),
    Column("per_user_daily_limit", Integer),
    Column("daily_count_limit", BigInteger),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("points_price", BigInteger),  # points for one coupon by exchange (flows/points.py); NULL: not offered
    Column("channel", Text),  # wechatpay_favor | alipay_voucher: mirrored at that channel (flows/channel_stocks.py)
    CheckConstraint("remaining_count >= 0 AND remaining_budget_minor >= 0", name="coupon_stocks_budget_nonnegative"),
    Index("coupon_stocks_campaign", "campaign_id"),
    Index("coupon_stocks_owner", "owner_merchant_id", "stock_id"),
)

# Claims counted per (stock, subject, period): subject is a user id or '*' (the whole stock); period is
# 'total' or a day 'YYYY-MM-DD' (China time). One conditional upsert per counter keeps limits exact.
claim_counters = Table(
    "claim_counters",
    metadata,
    Column("stock_id", Text, primary_key=True),
    Column("subject", Text, primary_key=True),
    Column("period", Text, primary_key=True),
    Column("claimed_count", BigInteger, nullable=False),
)

coupons = Table(
    "coupons",
    metadata,
    Column("coupon_id", Text, primary_key=True),
    Column("stock_id", Text, ForeignKey("coupon_stocks.stock_id"), nullable=False),
    Column("campaign_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("source", Text, nullable=False),  # claim | bulk
    Column("code", Text, nullable=False, unique=True),
    Column("status", Text, nullable=False),  # available | locked | used
    Column("face_value_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("redemption_id", Text),  # the lock or use holding the coupon
    Column("claimed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("user_id", "request_id", name="coupons_user_request_key"),
    Index("coupons_user", "user_id", "coupon_id"),
    Index("coupons_stock_status", "stock_id", "status"),
)

redemptions = Table(
    "redemptions",
    metadata,
    Column("redemption_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # online | in_store
    Column("request_key", Text, nullable=False),  # online: payment id; in store: merchant + request id
    Column("coupon_id", Text, ForeignKey("coupons.coupon_id"), nullable=False),
    Column("stock_id", Text, nullable=False),
    Column("campaign_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("merchant_id", Text, nullable=False),
    Column("store_id", Text),
    Column("payment_id", Text),
    Column("status", Text, nullable=False),  # locked | used | released | expired | refunded | undone
    Column("currency", Text, nullable=False),
    Column("order_amount_minor", BigInteger, nullable=False),
    Column("discount_minor", BigInteger, nullable=False),
    Column("payable_minor", BigInteger, nullable=False),
    Column("funding_party", Text, nullable=False),
    Column("platform_share_bps", Integer, nullable=False),
    Column("platform_minor", BigInteger, nullable=False),
    Column("merchant_minor", BigInteger, nullable=False),
    Column("refunded_minor", BigInteger, nullable=False, server_default="0"),
    Column("reversed_platform_minor", BigInteger, nullable=False, server_default="0"),
    Column("reversed_merchant_minor", BigInteger, nullable=False, server_default="0"),
    Column("locked_until", DateTime(timezone=True)),
    Column("used_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("release_reason", Text),
    _now(),
    UniqueConstraint("kind", "request_key", name="redemptions_request_key"),
    Index("redemptions_locked_until", "locked_until", postgresql_where="status = 'locked'"),
    Index("redemptions_campaign", "campaign_id", "status"),
)

redemption_refunds = Table(
    "redemption_refunds",
    metadata,
    Column("refund_id", Text, primary_key=True),
    Column("redemption_id", Text, ForeignKey("redemptions.redemption_id"), nullable=False),
    Column("refund_amount_minor", BigInteger, nullable=False),
    Column("platform_minor", BigInteger, nullable=False),
    Column("merchant_minor", BigInteger, nullable=False),
    Column("coupon_returned", Text, nullable=False),  # 'yes' | 'no'
    _now(),
)

bulk_issues = Table(
    "bulk_issues",
    metadata,
    Column("bulk_issue_id", Text, primary_key=True),
    Column("stock_id", Text, ForeignKey("coupon_stocks.stock_id"), nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("total_count", Integer, nullable=False),
    _now(),
    UniqueConstraint("stock_id", "request_id", name="bulk_issues_request_key"),
)

bulk_issue_items = Table(
    "bulk_issue_items",
    metadata,
    Column("bulk_issue_id", Text, ForeignKey("bulk_issues.bulk_issue_id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("status", Text, nullable=False),  # pending | issued | failed
    Column("coupon_id", Text),
    Column("failure_code", Text),
    Index("bulk_issue_items_pending", "bulk_issue_id", "seq", postgresql_where="status = 'pending'"),
)

# Points: rules (who earns how much per payment, with caps), what each payment earned and how much of it
# refunds took back, the refunds seen (in any order with their payment), and daily caps per rule and user.
points_rules = Table(
    "points_rules",
    metadata,
    Column("rule_id", Text, primary_key=True),
    Column("owner_merchant_id", Text),
    Column("merchant_id", Text),  # the merchant whose payments earn; NULL: every merchant's
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False),  # active | ended
    Column("currency", Text, nullable=False),
    Column("unit_minor", BigInteger, nullable=False),
    Column("points_per_unit", BigInteger, nullable=False),
    Column("payment_points_max", BigInteger),
    Column("user_daily_points_max", BigInteger),
    _now(),
    Column("expiry_days", Integer),  # an earning expires this many days after the payment; NULL: never
    Index("points_rules_merchant", "merchant_id", "status"),
)

points_earnings = Table(
    "points_earnings",
    metadata,
    Column("payment_id", Text, primary_key=True),
    Column("rule_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("merchant_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("reversed_points", BigInteger, nullable=False, server_default="0"),
    _now(),
    # Each earning is a lot: what is left of it = points − reversed − consumed − expired (never below 0).
    Column("expires_at", DateTime(timezone=True)),
    Column("consumed_points", BigInteger, nullable=False, server_default="0"),  # exchanged for coupons (FIFO)
    Column("expired_points", BigInteger, nullable=False, server_default="0"),
    Index("points_earnings_user", "user_id", "payment_id"),
    Index("points_earnings_expiry", "expires_at", postgresql_where="expired_points = 0"),
)

# Points exchanged for a coupon: one per (user, request_id), the coupon claimed from the stock in the same
# transaction as the lots consumed.
points_exchanges = Table(
    "points_exchanges",
    metadata,
    Column("exchange_id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("stock_id", Text, nullable=False),
    Column("coupon_id", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    _now(),
    UniqueConstraint("user_id", "request_id", name="points_exchanges_request"),
)

points_refunds = Table(
    "points_refunds",
    metadata,
    Column("refund_id", Text, primary_key=True),
    Column("payment_id", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    _now(),
    Index("points_refunds_payment", "payment_id"),
)

points_daily = Table(
    "points_daily",
    metadata,
    Column("rule_id", Text, primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("day", Text, primary_key=True),
    Column("earned_points", BigInteger, nullable=False),
)

# Top-up promotions (充值送, flows/topups.py): a rule gives a bonus (by tier) on a paid wallet top-up, funded by
# the platform; `remaining_budget_minor` only changes by one conditional UPDATE (CHECK >= 0 backs it).
topup_promotions = Table(
    "topup_promotions",
    metadata,
    Column("promotion_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False),  # running | ended
    Column("currency", Text, nullable=False),
    Column("tiers", JSONB, nullable=False),  # [{min_topup_minor, bonus_minor}], ascending
    Column("budget_minor", BigInteger, nullable=False),
    Column("remaining_budget_minor", BigInteger, nullable=False),
    Column("granted_count", BigInteger, nullable=False, server_default="0"),
    Column("per_holder_limit", Integer, nullable=False),
    Column("bonus_valid_days", Integer),  # the bonus expires this many days after the top-up; NULL: never
    Column("valid_from", DateTime(timezone=True)),
    Column("valid_until", DateTime(timezone=True)),
    _now(),
    CheckConstraint("remaining_budget_minor >= 0", name="topup_promotions_budget_not_negative"),
    Index("topup_promotions_running", "currency", postgresql_where="status = 'running'"),
)

# One row per paid top-up seen (primary key = the exactly-once key): granted | not_granted | revoked | expired.
topup_bonus_grants = Table(
    "topup_bonus_grants",
    metadata,
    Column("payment_id", Text, primary_key=True),
    Column("holder_id", Text, nullable=False),
    Column("promotion_id", Text),  # NULL: no promotion gave a bonus
    Column("status", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("topup_minor", BigInteger, nullable=False),
    Column("bonus_minor", BigInteger, nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    _now(),
    Index("topup_bonus_grants_holder", "holder_id", "payment_id"),
    Index("topup_bonus_grants_promotion", "promotion_id"),
    Index("topup_bonus_grants_expiry", "expires_at", postgresql_where="status = 'granted'"),
)

topup_promotion_holders = Table(
    "topup_promotion_holders",
    metadata,
    Column("promotion_id", Text, primary_key=True),
    Column("holder_id", Text, primary_key=True),
    Column("granted_count", Integer, nullable=False),
)


# Channel coupon mirroring (flows/channel_stocks.py, flows/channel_coupons.py; docs/marketing.md "Channel coupons").
# A channel stock: who creates it at the channel (whose channel account, in the cashier), the create request fixed
# when it is first prepared (sent again unchanged, so the channel's idempotency answers the same stock after a
# crash), and the channel's id once known.
channel_stocks = Table(
    "channel_stocks",
    metadata,
    Column("stock_id", Text, ForeignKey("coupon_stocks.stock_id"), primary_key=True),
    Column("program", Text, nullable=False),
    Column("merchant_id", Text, nullable=False),
    Column("out_request_no", Text, nullable=False, unique=True),
    Column("request", JSONB, nullable=False),
    Column("channel_stock_id", Text),
    Column("channel_status", Text, nullable=False),  # preparing | created | running | paused | stopped
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("program", "channel_stock_id", name="channel_stocks_channel_id_key"),
)

# A coupon sent to a user at the channel: claimed here (the budget), then sent (idempotent by out_request_no).
channel_coupons = Table(
    "channel_coupons",
    metadata,
    Column("coupon_id", Text, ForeignKey("coupons.coupon_id"), primary_key=True),
    Column("stock_id", Text, nullable=False),
    Column("program", Text, nullable=False),
    Column("channel_user", Text, nullable=False),  # openid (WeChat) or Alipay user id
    Column("out_request_no", Text, nullable=False, unique=True),
    Column("send_status", Text, nullable=False),  # pending | sent | refused
    Column("failure_code", Text),
    Column("channel_coupon_id", Text),
    Column("used_at", DateTime(timezone=True)),
    Column("transaction_id", Text),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("program", "channel_coupon_id", name="channel_coupons_channel_id_key"),
    Index("channel_coupons_stock", "stock_id", "send_status"),
    Index("channel_coupons_pending", "created_at", postgresql_where="send_status = 'pending'"),
)

# Every verified channel callback, once (its channel id is the key): applied to its coupon when that is known,
# kept until then (a callback may come before our own record of the send is committed).
channel_coupon_events = Table(
    "channel_coupon_events",
    metadata,
    Column("program", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # used | received | expired | stock
    Column("channel_stock_id", Text, nullable=False),
    Column("channel_coupon_id", Text),
    Column("occurred_at", DateTime(timezone=True)),
    Column("transaction_id", Text),
    Column("detail", JSONB, nullable=False),
    Column("applied_at", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("channel_coupon_events_unapplied", "program", "channel_coupon_id", postgresql_where="applied_at IS NULL"),
)
