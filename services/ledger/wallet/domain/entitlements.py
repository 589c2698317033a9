"""Entitlements: what a holder may do with a sub-account, and up to how much.

Configured per (holder type, KYC level, sub-account type, action). The platform overrides the defaults
below through an audited instruction (store: `wallet_entitlements` + `wallet_entitlement_changes`).

The single limit is checked here. Daily and monthly limits are enforced by the ledger engine itself, in the
same transfer as the money: each limited movement also debits a memo account "quota[holder, sub-account
type, action, window]" (code 9101) whose `credit_limit_minor` is the limit and which may not go below
−limit. So the limit check and the movement are one atomic decision under the account row lock, exact
under any concurrency and across replicas; a voided hold (failed withdrawal) gives the quota back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from enum import StrEnum

from services.ledger.wallet.domain import errors
from services.ledger.wallet.domain.errors import WalletError

CHINA_TZ = timezone(timedelta(hours=8))  # daily/monthly windows follow the business day in China


class HolderType(StrEnum):
    PERSON = "person"
    MERCHANT = "merchant"


class SubaccountType(StrEnum):
    BALANCE = "balance"
    PREPAID = "prepaid"
    POINTS = "points"
    BONUS = "bonus"  # a top-up promotion's bonus (充值送): spend only; never withdrawn, transferred, cashed
    COUPON = "coupon"
    CREDIT = "credit"
    BANK_CLASS2 = "bank_class2"
    PSP = "psp"
    MERCHANT_PENDING = "merchant_pending"
    MERCHANT_SETTLED = "merchant_settled"
    MERCHANT_PAYABLE = "merchant_payable"


class Action(StrEnum):
    TOP_UP = "top_up"
    WITHDRAW = "withdraw"
    SPEND = "spend"
    TRANSFER = "transfer"


@dataclass(frozen=True, slots=True)
class Entitlement:
    allowed: bool = False
    single_limit_minor: int | None = None
    daily_limit_minor: int | None = None
    monthly_limit_minor: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "allowed": self.allowed,
            "single_limit_minor": self.single_limit_minor,
            "daily_limit_minor": self.daily_limit_minor,
            "monthly_limit_minor": self.monthly_limit_minor,
        }


DENIED = Entitlement()
_YUAN = 100

# Defaults modelled on PBOC payment-account classes: unverified ≈ Class I (small amounts, no withdrawal),
# verified ≈ Class II/III. Keys: (holder type, KYC level, sub-account type, action).
_PERSON_UNVERIFIED = {
    (SubaccountType.BALANCE, Action.TOP_UP): Entitlement(True, 1_000 * _YUAN, 1_000 * _YUAN, 1_000 * _YUAN),
    (SubaccountType.BALANCE, Action.SPEND): Entitlement(True, 500 * _YUAN, 1_000 * _YUAN, 1_000 * _YUAN),
    (SubaccountType.PREPAID, Action.TOP_UP): Entitlement(True, 1_000 * _YUAN, 1_000 * _YUAN, 1_000 * _YUAN),
    (SubaccountType.PREPAID, Action.SPEND): Entitlement(True),
    (SubaccountType.POINTS, Action.TOP_UP): Entitlement(True),
    (SubaccountType.POINTS, Action.SPEND): Entitlement(True),
    (SubaccountType.BONUS, Action.TOP_UP): Entitlement(True),  # granted by marketing's instruction only
    (SubaccountType.BONUS, Action.SPEND): Entitlement(True),
}
_PERSON_VERIFIED = {
    **_PERSON_UNVERIFIED,
    (SubaccountType.BALANCE, Action.TOP_UP): Entitlement(True, 50_000 * _YUAN, 50_000 * _YUAN, 200_000 * _YUAN),
    (SubaccountType.BALANCE, Action.SPEND): Entitlement(True, 50_000 * _YUAN, 50_000 * _YUAN, 200_000 * _YUAN),
    (SubaccountType.BALANCE, Action.TRANSFER): Entitlement(True, 10_000 * _YUAN, 10_000 * _YUAN, 50_000 * _YUAN),
    (SubaccountType.PREPAID, Action.TOP_UP): Entitlement(True, 5_000 * _YUAN, 5_000 * _YUAN, 20_000 * _YUAN),
    (SubaccountType.CREDIT, Action.SPEND): Entitlement(True, 5_000 * _YUAN),
    (SubaccountType.CREDIT, Action.TOP_UP): Entitlement(True),  # repaying the line
}
_PERSON_WITH_CARD = {
    **_PERSON_VERIFIED,
    (SubaccountType.BALANCE, Action.WITHDRAW): Entitlement(True, 50_000 * _YUAN, 50_000 * _YUAN, 200_000 * _YUAN),
}
DEFAULTS: dict[tuple[HolderType, int, SubaccountType, Action], Entitlement] = {
    **{(HolderType.PERSON, 0, s, a): e for (s, a), e in _PERSON_UNVERIFIED.items()},
    **{(HolderType.PERSON, 1, s, a): e for (s, a), e in _PERSON_VERIFIED.items()},
    **{(HolderType.PERSON, 2, s, a): e for (s, a), e in _PERSON_WITH_CARD.items()},
}
KYC_LEVELS = (0, 1, 2)


def effective(
    overrides: dict[tuple[HolderType, int, SubaccountType, Action], Entitlement],
    holder_type: HolderType,
    level: int,
    subaccount: SubaccountType,
    action: Action,
) -> Entitlement:
    key = (holder_type, level, subaccount, action)
    return overrides.get(key, DEFAULTS.get(key, DENIED))


def check(entitlement: Entitlement, amount_minor: int, *, what: str) -> None:
    """Refuses before anything is written: not allowed at all, or above the single-transaction limit."""
    if not entitlement.allowed:
        raise WalletError(errors.ENTITLEMENT_DENIED, f"{what} is not allowed at this verification level")
    if entitlement.single_limit_minor is not None and amount_minor > entitlement.single_limit_minor:
        raise WalletError(
            errors.LIMIT_EXCEEDED,
            f"{what}: {amount_minor} is above the single limit",
            limit="single",
            limit_minor=entitlement.single_limit_minor,
        )


@dataclass(frozen=True, slots=True)
class QuotaWindow:
    """One limit window: `period` is `day` or `month`, `label` e.g. `20261125` / `202611`."""

    period: str
    label: str
    limit_minor: int


def windows(entitlement: Entitlement, now: datetime) -> list[QuotaWindow]:
    local = now.astimezone(CHINA_TZ)
    out = []
    if entitlement.daily_limit_minor is not None:
        out.append(QuotaWindow("day", local.strftime("%Y%m%d"), entitlement.daily_limit_minor))
    if entitlement.monthly_limit_minor is not None:
        out.append(QuotaWindow("month", local.strftime("%Y%m"), entitlement.monthly_limit_minor))
    return out


def changed(current: Entitlement, changes: dict[str, object]) -> Entitlement:
    """A partial change: only the given fields (validated by the API schema) replace the current ones."""
    return replace(current, **changes)  # type: ignore[arg-type]
