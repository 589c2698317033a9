"""Wallet channel config and the ledger's chart conventions the cashier relies on (docs/ledger.md §2, §3.2).

The account keys must be the ledger's own convention (`services/ledger/events/postings.py`: same key,
same body): the ledger's consumer and this connector then share one merchant_pending account per
merchant and currency, whoever opens it first.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SOURCE = "cashier"
PLATFORM_HOLDER = "platform"
USER_WALLET_KIND = "user_wallet"
USER_BONUS_KIND = "user_bonus"  # 2308: a top-up promotion's bonus, spent after the cash (docs/marketing.md)
BONUS_LOT_KIND = "wallet_bonus_lot"  # 9106: one per granted bonus, opened by the ledger (docs/ledger.md §3.11)


class WalletConfig(BaseModel):
    """A merchant's wallet channel. Empty is the normal case: the cashier's `JUHE_CASHIER_LEDGER_URL`."""

    model_config = ConfigDict(extra="forbid")

    ledger_url: str = Field(default="", max_length=1024)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)


def account_body(*, holder_id: str, kind: str, currency: str) -> dict[str, Any]:
    """`POST /v1/accounts` body of a chart account, keyed `chart:<kind>:<holder>:<currency>`, named by its kind: the
    ledger takes the code from its chart (docs/ledger.md §2)."""
    return {
        "holder_id": holder_id,
        "currency": currency,
        "kind": kind,
        "metadata": {},
        "idempotency_key": f"chart:{kind}:{holder_id}:{currency}",
    }


def merchant_pending(merchant_id: str, currency: str) -> dict[str, Any]:
    return account_body(holder_id=merchant_id, kind="merchant_pending", currency=currency)


def platform_fee_income(currency: str) -> dict[str, Any]:
    return account_body(holder_id=PLATFORM_HOLDER, kind="platform_fee_income", currency=currency)


def bonus_refundable(payment_id: str, currency: str, lot: str | None = None) -> dict[str, Any]:
    """9104 memo, one per payment and bonus lot it spent (the unlotted rest of the pool: `lot` None): credited with
    that part when the hold posts, debited by what refunds give back of it. No overdraft: refunds can never give
    back more of a lot than the payment took from it."""
    body = account_body(holder_id=payment_id, kind="wallet_bonus_refundable", currency=currency)
    if lot is not None:
        body["idempotency_key"] += f":{lot}"
        body["metadata"] = {"lot": lot}
    return {**body, "flags": {"debits_must_not_exceed_credits": True}}


def bonus_lot_usage(currency: str) -> dict[str, Any]:
    """9107 memo counterpart of the lots (the ledger opens it with the same key on the first grant)."""
    return account_body(holder_id=PLATFORM_HOLDER, kind="wallet_bonus_lot_usage", currency=currency)


def marketing_expense(currency: str) -> dict[str, Any]:
    """5201: where a refund's share of a revoked or expired bonus goes back (the platform funded it)."""
    return account_body(holder_id=PLATFORM_HOLDER, kind="marketing_expense", currency=currency)


def bonus_refundable_usage(currency: str) -> dict[str, Any]:
    """9105 memo counterpart of every 9104 (memo lines balance among themselves, like the quota memos)."""
    return account_body(holder_id=PLATFORM_HOLDER, kind="wallet_bonus_refundable_usage", currency=currency)


def spend_split(amount_minor: int, cash_available_minor: int, bonus_available_minor: int | None) -> tuple[int, int]:
    """(from cash, from bonus): the cash balance first, then the bonus for the rest (docs/marketing.md "Top-up
    promotions": the bonus is the platform's money, clawed back if its top-up is refunded, so it is spent last).
    All from cash when there is no bonus or cash and bonus together fall short: the ledger then refuses it
    (insufficient_funds) exactly as before bonuses existed."""
    from_cash = min(amount_minor, max(cash_available_minor, 0))
    rest = amount_minor - from_cash
    if rest == 0 or bonus_available_minor is None or rest > bonus_available_minor:
        return amount_minor, 0
    return from_cash, rest


def bonus_refund_shares(refund_minor: int, refundable_minor: list[int]) -> list[int]:
    """What a refund gives back to each bonus part of the payment (in the order the payment spent them): the bonus
    first and the last part spent first (the last money spent is the first returned), each up to what the payment
    took from it and earlier refunds have not given back yet (its 9104 memo's balance); the rest is cash."""
    shares = [0] * len(refundable_minor)
    left = refund_minor
    for i in reversed(range(len(refundable_minor))):
        shares[i] = max(0, min(left, refundable_minor[i]))
        left -= shares[i]
    return shares


def hold_key(out_trade_no: str) -> str:
    """§3.2 `pay_…:hold`: a wallet attempt's out_trade_no is its payment id."""
    return f"{out_trade_no}:hold"


def refund_key(out_refund_no: str) -> str:
    """§3.3 `re_…:succeeded`: the wallet refund transfer, posted by the cashier itself."""
    return f"{out_refund_no}:succeeded"


def refund_fee_share(fee_minor: int, refund_minor: int, gross_minor: int) -> int:
    """§3.3: a fee line scaled by refund/gross, rounded down (the remainder stays on the merchant line)."""
    return min(fee_minor, fee_minor * refund_minor // gross_minor) if gross_minor > 0 else 0
