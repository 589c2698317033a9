"""The postings of the cashier's business events (docs/ledger.md §3.1 and §3.3), as pure functions.

Why pure: the arithmetic (fee lines, rounding of partial refunds) is where money goes wrong, so it is
tested without a database; the consumer only opens the accounts these functions name and submits the
transfer they build.

Accounts are named by `AccountSpec`: one per (holder, kind, currency[, channel]), opened on first use
with a deterministic idempotency key (`account_key`), so every replica and every service that follows
the same convention (the cashier's wallet connector does) finds the same account and never a second.
The key names one account per book: a plan carries the event's book (`livemode`, live when the event has
no such field) and every line of it is opened and posted in that book (docs/ledger.md "Books").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.ledger.domain import chart
from services.ledger.domain.chart import ChartAccount

PLATFORM_HOLDER = "platform"
SOURCE_CASHIER = "cashier"
SOURCE_MARKETING = "marketing"
WALLET_CHANNEL = "wallet"


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """A chart-of-accounts entry (domain/chart.py) for one holder, currency and channel (docs/ledger.md §2)."""

    holder_id: str
    entry: ChartAccount
    currency: str
    channel: str | None = None

    @property
    def kind(self) -> str:
        return self.entry.kind

    @property
    def code(self) -> str:
        return self.entry.code

    @property
    def idempotency_key(self) -> str:
        return account_key(self.kind, self.holder_id, self.currency, self.channel)

    def open_body(self) -> dict[str, Any]:
        """The exact `POST /v1/accounts` body: the same key always comes with the same body. Named by its kind
        alone, as other services name chart accounts (the ledger takes the code from the chart)."""
        return {
            "holder_id": self.holder_id,
            "currency": self.currency,
            "kind": self.kind,
            "metadata": {"channel": self.channel} if self.channel else {},
            "idempotency_key": self.idempotency_key,
        }


def account_key(kind: str, holder_id: str, currency: str, channel: str | None = None) -> str:
    """`chart:<kind>:<holder>:<currency>[:<channel>]`: the opening idempotency key of a chart account."""
    key = f"chart:{kind}:{holder_id}:{currency}"
    return f"{key}:{channel}" if channel else key


def channel_clearing(channel: str, currency: str) -> AccountSpec:
    return AccountSpec(PLATFORM_HOLDER, chart.CHANNEL_CLEARING, currency, channel)


def channel_fee_expense(channel: str, currency: str) -> AccountSpec:
    return AccountSpec(PLATFORM_HOLDER, chart.CHANNEL_FEE_EXPENSE, currency, channel)


def merchant_pending(merchant_id: str, currency: str) -> AccountSpec:
    return AccountSpec(merchant_id, chart.MERCHANT_PENDING, currency)


def platform_fee_income(currency: str) -> AccountSpec:
    return AccountSpec(PLATFORM_HOLDER, chart.PLATFORM_FEE_INCOME, currency)


def marketing_expense(currency: str) -> AccountSpec:
    """5201: what the platform pays for the coupons it funds (§3.13), one per currency."""
    return AccountSpec(PLATFORM_HOLDER, chart.MARKETING_EXPENSE, currency)


@dataclass(frozen=True, slots=True)
class PlanLine:
    """One posting of a plan, on an account named by its chart entry (the consumer opens it, then posts)."""

    account: AccountSpec
    direction: str  # "debit" | "credit"
    amount_minor: int


@dataclass(frozen=True, slots=True)
class PostingPlan:
    """One transfer to post: `(source, idempotency_key)` makes it happen at most once."""

    idempotency_key: str
    reference: str
    currency: str
    lines: tuple[PlanLine, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = SOURCE_CASHIER
    livemode: bool = True  # the book every line is posted in


def event_livemode(data: dict[str, Any]) -> bool:
    """The book of a cashier event: test only when it says `livemode: false`. Events published before modes
    existed have no such field and were live money (docs/test-mode.md)."""
    return data.get("livemode") is not False


def _int(value: Any) -> int:
    """Event fields that may be absent or null (routing fallback: no fee in force) count as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _positive(lines: list[PlanLine]) -> tuple[PlanLine, ...]:
    """A fee of 0 is no posting at all (the ledger refuses zero amounts)."""
    return tuple(line for line in lines if line.amount_minor > 0)


def is_wallet(data: dict[str, Any]) -> bool:
    """Wallet payments move their money by the cashier's two-phase transfer (§3.2), never here."""
    return data.get("channel") == WALLET_CHANNEL or data.get("scene") == WALLET_CHANNEL


@dataclass(frozen=True, slots=True)
class DiscountFunding:
    """Who funds a coupon's discount on a payment (the cashier's `discount`, from marketing's lock)."""

    platform_minor: int = 0  # the platform's subsidy: 5201 marketing_expense → the merchant's 2201
    merchant_minor: int = 0  # contra-revenue: the merchant collects that much less (recorded, no money moves)
    channel_minor: int = 0  # the channel's contribution (promotion_detail): owed by the channel to the merchant

    @property
    def total_minor(self) -> int:
        return self.platform_minor + self.merchant_minor + self.channel_minor

    def memo(self, order_amount_minor: int | None) -> dict[str, Any]:
        return {
            "order_amount_minor": order_amount_minor,
            "discount_minor": self.total_minor,
            "platform_minor": self.platform_minor,
            "merchant_minor": self.merchant_minor,
            "channel_minor": self.channel_minor,
        }


def discount_funding(discount: Any) -> DiscountFunding | None:
    """The funding split an event carries (`discount` of a payment, `payment_discount` of a refund); None
    when the payment had no coupon."""
    if not isinstance(discount, dict):
        return None
    return DiscountFunding(
        _int(discount.get("platform_minor")), _int(discount.get("merchant_minor")), _int(discount.get("channel_minor"))
    )


def channel_unsettled(channel_discount: Any, cap_minor: int) -> int:
    """What the channel does not settle of a payment because of its own coupons (`channel_discount.unsettled_minor`
    of `payment.succeeded`, `payment_channel_discount` of a refund): a WeChat 免充值 (NOCASH) coupon, an Alipay
    商家券's merchant contribution — funded by the merchant at the channel, so the merchant collects that much
    less (docs/marketing.md "Channel coupons"). Capped at `cap_minor` so no line goes negative."""
    if not isinstance(channel_discount, dict):
        return 0
    return min(_int(channel_discount.get("unsettled_minor")), max(cap_minor, 0))


def subsidy_reversed(subsidy_minor: int, payable_minor: int, refunded_before_minor: int, refund_minor: int) -> int:
    """The part of a subsidy one refund gives back: cumulative floors (`floor(S × after / payable) − floor(S ×
    before / payable)`), so any sequence of partial refunds gives back exactly the whole subsidy at full refund
    — marketing's own refund rule (services/marketing domain/rules.py), so the three sides agree."""
    if payable_minor <= 0 or subsidy_minor <= 0:
        return 0
    after = min(refunded_before_minor + refund_minor, payable_minor)
    before = min(max(refunded_before_minor, 0), after)
    return subsidy_minor * after // payable_minor - subsidy_minor * before // payable_minor


def payment_succeeded_plan(data: dict[str, Any]) -> PostingPlan:
    """§3.1: Dr clearing (gross − channel fee), Dr channel fee; Cr merchant_pending (gross − platform fee),
    Cr platform fee. Fees are the ones in force carried by the event, capped at the gross.

    With a coupon (§3.13) the gross is what the channel collected (the discounted amount); the platform's
    subsidy is one more line, Dr 5201 marketing_expense → Cr 2201 (the merchant line grows by it), and the
    channel's contribution is owed by the channel (Dr 1101 clearing → Cr 2201); the merchant-funded part moves
    no money and is recorded in the transfer's `metadata.discount` (contra-revenue: the merchant simply
    collects less)."""
    gross = int(data["amount_minor"])
    currency = str(data["currency"])
    channel = str(data["channel"])
    channel_fee = min(_int(data.get("fee_minor")), gross)
    platform_fee = min(_int(data.get("platform_fee_minor")), gross)
    funding = discount_funding(data.get("discount")) or DiscountFunding()
    # §3.15: the merchant-funded part of the channel's own coupons is never settled by the channel: clearing and
    # the merchant's 2201 both take that much less.
    unsettled = channel_unsettled(data.get("channel_discount"), gross - max(channel_fee, platform_fee))
    lines = [
        PlanLine(channel_clearing(channel, currency), "debit", gross - channel_fee + funding.channel_minor - unsettled),
        PlanLine(channel_fee_expense(channel, currency), "debit", channel_fee),
        PlanLine(marketing_expense(currency), "debit", funding.platform_minor),
        PlanLine(
            merchant_pending(str(data["merchant_id"]), currency),
            "credit",
            gross - platform_fee + funding.platform_minor + funding.channel_minor - unsettled,
        ),
        PlanLine(platform_fee_income(currency), "credit", platform_fee),
    ]
    payment_id = str(data["payment_id"])
    metadata: dict[str, Any] = {
        "event": "payment.succeeded",
        "channel": channel,
        "channel_trade_no": data.get("channel_trade_no"),
        "route_id": data.get("route_id"),
    }
    if isinstance(data.get("discount"), dict):
        metadata["discount"] = {
            **funding.memo(data.get("order_amount_minor")),
            "coupon_id": data["discount"].get("coupon_id"),
            "redemption_id": data["discount"].get("redemption_id"),
            "campaign_id": data["discount"].get("campaign_id"),
        }
    if isinstance(data.get("channel_discount"), dict):
        metadata["channel_discount"] = _channel_memo(data["channel_discount"], unsettled)
    return PostingPlan(
        idempotency_key=f"{payment_id}:succeeded",
        reference=payment_id,
        currency=currency,
        lines=_positive(lines),
        metadata=metadata,
        livemode=event_livemode(data),
    )


def refund_fee_share(fee_minor: int, refund_minor: int, gross_minor: int) -> int:
    """A fee line of a (partial) refund: the fee scaled by refund/gross, rounded down (§3.3)."""
    if gross_minor <= 0:
        return 0
    return min(fee_minor, fee_minor * refund_minor // gross_minor)


def refund_succeeded_plan(data: dict[str, Any]) -> PostingPlan:
    """§3.3: the mirror of §3.1 scaled by refund/gross; fee lines rounded down, the remainder on the
    merchant (platform fee) and clearing (channel fee) lines."""
    refund = int(data["amount_minor"])
    gross = int(data.get("payment_amount_minor") or refund)
    currency = str(data["currency"])
    channel = str(data["channel"])
    channel_fee = refund_fee_share(min(_int(data.get("payment_fee_minor")), gross), refund, gross)
    platform_fee = refund_fee_share(min(_int(data.get("payment_platform_fee_minor")), gross), refund, gross)
    # §3.13: the platform's subsidy (and a channel's contribution) go back in proportion to the refunded part of
    # what the channel collected; `payment_refunded_minor` is the payment's refunded total after this refund.
    funding = discount_funding(data.get("payment_discount")) or DiscountFunding()
    before = _int(data.get("payment_refunded_minor")) - refund
    platform_back = subsidy_reversed(funding.platform_minor, gross, before, refund)
    channel_back = subsidy_reversed(funding.channel_minor, gross, before, refund)
    # §3.15: the channel gives back its merchant-funded coupon's share, not cash: both lines take that much less.
    payment_unsettled = channel_unsettled(
        data.get("payment_channel_discount"),
        gross - max(_int(data.get("payment_fee_minor")), _int(data.get("payment_platform_fee_minor"))),
    )
    unsettled_back = min(
        subsidy_reversed(payment_unsettled, gross, before, refund), refund - max(channel_fee, platform_fee)
    )
    lines = [
        PlanLine(
            merchant_pending(str(data["merchant_id"]), currency),
            "debit",
            refund - platform_fee + platform_back + channel_back - unsettled_back,
        ),
        PlanLine(platform_fee_income(currency), "debit", platform_fee),
        PlanLine(channel_clearing(channel, currency), "credit", refund - channel_fee + channel_back - unsettled_back),
        PlanLine(channel_fee_expense(channel, currency), "credit", channel_fee),
        PlanLine(marketing_expense(currency), "credit", platform_back),
    ]
    refund_id = str(data["refund_id"])
    metadata: dict[str, Any] = {
        "event": "refund.succeeded",
        "channel": channel,
        "payment_id": data.get("payment_id"),
        "channel_refund_no": data.get("channel_refund_no"),
    }
    if isinstance(data.get("payment_discount"), dict):
        metadata["discount_reversed"] = {"platform_minor": platform_back, "channel_minor": channel_back}
    if unsettled_back:
        metadata["channel_unsettled_reversed_minor"] = unsettled_back
    return PostingPlan(
        idempotency_key=f"{refund_id}:succeeded",
        reference=refund_id,
        currency=currency,
        lines=_positive(lines),
        metadata=metadata,
        livemode=event_livemode(data),
    )


def _channel_memo(channel_discount: dict[str, Any], unsettled_minor: int) -> dict[str, Any]:
    """What the payment's transfer records of the channel's coupons (who funded what; the coupons' ids)."""
    return {
        "discount_minor": _int(channel_discount.get("discount_minor")),
        "channel_minor": _int(channel_discount.get("channel_minor")),
        "merchant_minor": _int(channel_discount.get("merchant_minor")),
        "unsettled_minor": unsettled_minor,
        "coupon_ids": [str(c.get("coupon_id")) for c in channel_discount.get("coupons") or [] if isinstance(c, dict)],
    }


IN_STORE_USED = "coupon.used"
IN_STORE_UNDONE = "coupon.redemption_undone"


def in_store_coupon_plan(event_type: str, data: dict[str, Any]) -> PostingPlan | None:
    """§3.14: a coupon redeemed in store (核销) — the merchant was paid outside Juhe, so only the platform's
    subsidy moves: `coupon.used` (kind `in_store`) Dr 5201 marketing_expense P → Cr 2201 merchant_pending P,
    key `<rdm>:in_store_used`; `coupon.redemption_undone` the reverse, key `<rdm>:in_store_undone`. The
    merchant-funded part moves nothing (the merchant took less at the till). None: nothing to post (an online
    redemption, whose funding is in the payment's own transfer §3.13, or no platform part)."""
    if data.get("kind") != "in_store":
        return None
    if event_type == IN_STORE_USED:
        platform = _int((data.get("funding") or {}).get("platform_minor"))
        key, debit, credit = "in_store_used", "debit", "credit"
    elif event_type == IN_STORE_UNDONE:
        platform = _int((data.get("reversed") or {}).get("platform_minor"))
        key, debit, credit = "in_store_undone", "credit", "debit"
    else:
        return None
    if platform <= 0:
        return None
    currency, redemption_id = str(data["currency"]), str(data["redemption_id"])
    return PostingPlan(
        idempotency_key=f"{redemption_id}:{key}",
        reference=redemption_id,
        currency=currency,
        lines=(
            PlanLine(marketing_expense(currency), debit, platform),
            PlanLine(merchant_pending(str(data["merchant_id"]), currency), credit, platform),
        ),
        metadata={
            "event": event_type,
            "coupon_id": data.get("coupon_id"),
            "campaign_id": data.get("campaign_id"),
            "store_id": data.get("store_id"),
            "platform_minor": platform,
        },
        source=SOURCE_MARKETING,
    )
