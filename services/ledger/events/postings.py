"""The postings of the cashier's business events (docs/ledger.md §3.1 and §3.3), as pure functions.

Why pure: the arithmetic (fee lines, rounding of partial refunds) is where money goes wrong, so it is
tested without a database; the consumer only opens the accounts these functions name and submits the
transfer they build.

Accounts are named by `AccountSpec`: one per (holder, kind, currency[, channel]), opened on first use
with a deterministic idempotency key (`account_key`), so every replica and every service that follows
the same convention (the cashier's wallet connector does) finds the same account and never a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PLATFORM_HOLDER = "platform"
SOURCE_CASHIER = "cashier"
WALLET_CHANNEL = "wallet"


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """A chart-of-accounts line for one holder (docs/ledger.md §2)."""

    holder_id: str
    kind: str
    code: str
    currency: str
    channel: str | None = None

    @property
    def idempotency_key(self) -> str:
        return account_key(self.kind, self.holder_id, self.currency, self.channel)

    def open_body(self) -> dict[str, Any]:
        """The exact `POST /v1/accounts` body: the same key always comes with the same body."""
        return {
            "holder_id": self.holder_id,
            "currency": self.currency,
            "kind": self.kind,
            "code": self.code,
            "metadata": {"channel": self.channel} if self.channel else {},
            "idempotency_key": self.idempotency_key,
        }


def account_key(kind: str, holder_id: str, currency: str, channel: str | None = None) -> str:
    """`chart:<kind>:<holder>:<currency>[:<channel>]`: the opening idempotency key of a chart account."""
    key = f"chart:{kind}:{holder_id}:{currency}"
    return f"{key}:{channel}" if channel else key


def channel_clearing(channel: str, currency: str) -> AccountSpec:
    return AccountSpec(PLATFORM_HOLDER, "channel_clearing", "1101", currency, channel)


def channel_fee_expense(channel: str, currency: str) -> AccountSpec:
    return AccountSpec(PLATFORM_HOLDER, "channel_fee_expense", "5101", currency, channel)


def merchant_pending(merchant_id: str, currency: str) -> AccountSpec:
    return AccountSpec(merchant_id, "merchant_pending", "2201", currency)


def platform_fee_income(currency: str) -> AccountSpec:
    return AccountSpec(PLATFORM_HOLDER, "platform_fee_income", "4101", currency)


@dataclass(frozen=True, slots=True)
class Line:
    account: AccountSpec
    direction: str  # "debit" | "credit"
    amount_minor: int


@dataclass(frozen=True, slots=True)
class PostingPlan:
    """One transfer to post: `(source, idempotency_key)` makes it happen at most once."""

    idempotency_key: str
    reference: str
    currency: str
    lines: tuple[Line, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


def _int(value: Any) -> int:
    """Event fields that may be absent or null (routing fallback: no fee in force) count as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _positive(lines: list[Line]) -> tuple[Line, ...]:
    """A fee of 0 is no posting at all (the ledger refuses zero amounts)."""
    return tuple(line for line in lines if line.amount_minor > 0)


def is_wallet(data: dict[str, Any]) -> bool:
    """Wallet payments move their money by the cashier's two-phase transfer (§3.2), never here."""
    return data.get("channel") == WALLET_CHANNEL or data.get("scene") == WALLET_CHANNEL


def payment_succeeded_plan(data: dict[str, Any]) -> PostingPlan:
    """§3.1: Dr clearing (gross − channel fee), Dr channel fee; Cr merchant_pending (gross − platform fee),
    Cr platform fee. Fees are the ones in force carried by the event, capped at the gross."""
    gross = int(data["amount_minor"])
    currency = str(data["currency"])
    channel = str(data["channel"])
    channel_fee = min(_int(data.get("fee_minor")), gross)
    platform_fee = min(_int(data.get("platform_fee_minor")), gross)
    lines = [
        Line(channel_clearing(channel, currency), "debit", gross - channel_fee),
        Line(channel_fee_expense(channel, currency), "debit", channel_fee),
        Line(merchant_pending(str(data["merchant_id"]), currency), "credit", gross - platform_fee),
        Line(platform_fee_income(currency), "credit", platform_fee),
    ]
    payment_id = str(data["payment_id"])
    return PostingPlan(
        idempotency_key=f"{payment_id}:succeeded",
        reference=payment_id,
        currency=currency,
        lines=_positive(lines),
        metadata={"event": "payment.succeeded", "channel": channel, "channel_trade_no": data.get("channel_trade_no"),
                  "route_id": data.get("route_id")},
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
    lines = [
        Line(merchant_pending(str(data["merchant_id"]), currency), "debit", refund - platform_fee),
        Line(platform_fee_income(currency), "debit", platform_fee),
        Line(channel_clearing(channel, currency), "credit", refund - channel_fee),
        Line(channel_fee_expense(channel, currency), "credit", channel_fee),
    ]
    refund_id = str(data["refund_id"])
    return PostingPlan(
        idempotency_key=f"{refund_id}:succeeded",
        reference=refund_id,
        currency=currency,
        lines=_positive(lines),
        metadata={"event": "refund.succeeded", "channel": channel, "payment_id": data.get("payment_id"),
                  "channel_refund_no": data.get("channel_refund_no")},
    )
