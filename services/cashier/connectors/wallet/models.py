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


class WalletConfig(BaseModel):
    """A merchant's wallet channel. Empty is the normal case: the cashier's `JUHE_CASHIER_LEDGER_URL`."""

    model_config = ConfigDict(extra="forbid")

    ledger_url: str = Field(default="", max_length=1024)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)


def account_body(*, holder_id: str, kind: str, code: str, currency: str) -> dict[str, Any]:
    """`POST /v1/accounts` body of a chart account, keyed `chart:<kind>:<holder>:<currency>`."""
    return {
        "holder_id": holder_id,
        "currency": currency,
        "kind": kind,
        "code": code,
        "metadata": {},
        "idempotency_key": f"chart:{kind}:{holder_id}:{currency}",
    }


def merchant_pending(merchant_id: str, currency: str) -> dict[str, Any]:
    return account_body(holder_id=merchant_id, kind="merchant_pending", code="2201", currency=currency)


def platform_fee_income(currency: str) -> dict[str, Any]:
    return account_body(holder_id=PLATFORM_HOLDER, kind="platform_fee_income", code="4101", currency=currency)


def hold_key(out_trade_no: str) -> str:
    """§3.2 `pay_…:hold`: a wallet attempt's out_trade_no is its payment id."""
    return f"{out_trade_no}:hold"


def refund_key(out_refund_no: str) -> str:
    """§3.3 `re_…:succeeded`: the wallet refund transfer, posted by the cashier itself."""
    return f"{out_refund_no}:succeeded"


def refund_fee_share(fee_minor: int, refund_minor: int, gross_minor: int) -> int:
    """§3.3: a fee line scaled by refund/gross, rounded down (the remainder stays on the merchant line)."""
    return min(fee_minor, fee_minor * refund_minor // gross_minor) if gross_minor > 0 else 0
