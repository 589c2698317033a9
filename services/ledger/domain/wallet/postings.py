"""Chart lines of the big wallet and the postings of each wallet flow (docs/ledger.md §3.7, §3.8, §3.11+).

Each function returns the postings of ONE transfer, balanced per currency; the store adds the entitlement
quota memo postings (code 9101/9102) to the same transfer, so limit and movement are one decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.ledger.domain.transfers import Direction, Posting
from services.ledger.domain.wallet.entitlements import SubaccountType

POINTS_CURRENCY = "XXX"  # ISO 4217 "no currency": one unit = one point


@dataclass(frozen=True, slots=True)
class Line:
    """A chart-of-accounts line: business kind, code and whether the account may go below zero."""

    kind: str
    code: str
    no_overdraft: bool


SUBACCOUNT_LINES: dict[SubaccountType, Line] = {
    SubaccountType.BALANCE: Line("user_wallet", "2301", True),
    SubaccountType.PREPAID: Line("user_prepaid", "2302", True),
    SubaccountType.CREDIT: Line("user_credit", "2303", True),  # with credit_limit_minor = the BNPL line
    SubaccountType.BANK_CLASS2: Line("bank_class2_mirror", "2304", True),
    SubaccountType.PSP: Line("psp_mirror", "2305", True),
    SubaccountType.POINTS: Line("user_points", "2306", True),
    SubaccountType.COUPON: Line("user_coupon", "2307", True),
    SubaccountType.BONUS: Line("user_bonus", "2308", True),  # opened on the first bonus (events/topups.py)
    SubaccountType.MERCHANT_PENDING: Line("merchant_pending", "2201", False),
    SubaccountType.MERCHANT_SETTLED: Line("merchant_settled", "2202", True),
    SubaccountType.MERCHANT_PAYABLE: Line("merchant_payable", "2203", True),
}
PERSON_SUBACCOUNTS = (
    SubaccountType.BALANCE, SubaccountType.POINTS, SubaccountType.COUPON, SubaccountType.CREDIT,
    SubaccountType.BANK_CLASS2, SubaccountType.PSP,
)  # fmt: skip
MERCHANT_SUBACCOUNTS = (
    SubaccountType.MERCHANT_PENDING, SubaccountType.MERCHANT_SETTLED, SubaccountType.MERCHANT_PAYABLE,
)  # fmt: skip
CHART_SUBACCOUNTS = frozenset({SubaccountType.BALANCE, *MERCHANT_SUBACCOUNTS})
"""Opened with the shared `chart:<kind>:<holder>:<currency>` key: the cashier's wallet connector and
settlement look these up too (one user_wallet / merchant_pending per holder and currency)."""
MONEY_SUBACCOUNTS = frozenset(SUBACCOUNT_LINES) - {SubaccountType.POINTS}

# Platform lines the wallet posts against (holder `platform`).
CHANNEL_CLEARING = Line("channel_clearing", "1101", False)
ESCROW_BANK = Line("escrow_bank", "1102", False)  # flag credits_must_not_exceed_debits
PLATFORM_FEE_INCOME = Line("platform_fee_income", "4101", False)
CHANNEL_FEE_EXPENSE = Line("channel_fee_expense", "5101", False)
MARKETING_EXPENSE = Line("marketing_expense", "5201", False)
POINTS_ISSUED = Line("points_issued", "3102", False)  # counterpart of every point in users' hands (XXX)
QUOTA = Line("entitlement_quota", "9101", True)  # memo, per holder/sub-account/action/window
QUOTA_USAGE = Line("entitlement_quota_usage", "9102", False)  # memo counterpart, platform
BILL_REPAYABLE = Line("bill_repayable", "9103", True)  # memo, one per bill: limit = amount due
BONUS_LOT = Line("wallet_bonus_lot", "9106", True)  # memo, one per top-up bonus: what is left of that bonus
BONUS_LOT_USAGE = Line("wallet_bonus_lot_usage", "9107", False)  # memo counterpart, platform


def dr(account_id: str, amount_minor: int, currency: str) -> Posting:
    return Posting(account_id, Direction.DEBIT, amount_minor, currency)


def cr(account_id: str, amount_minor: int, currency: str) -> Posting:
    return Posting(account_id, Direction.CREDIT, amount_minor, currency)


def top_up(
    *, clearing: str, fee_expense: str, target: str, amount_minor: int, fee_minor: int, currency: str
) -> list[Posting]:
    """§3.7: Dr channel_clearing (gross − fee), Dr channel_fee_expense fee, Cr sub-account gross."""
    out = [dr(clearing, amount_minor - fee_minor, currency)] if amount_minor > fee_minor else []
    if fee_minor:
        out.append(dr(fee_expense, fee_minor, currency))
    return [*out, cr(target, amount_minor, currency)]


def top_up_refund(
    *, clearing: str, fee_expense: str, source: str, amount_minor: int, top_up_minor: int, top_up_fee_minor: int,
    currency: str,
) -> list[Posting]:  # fmt: skip
    """§3.7 reversed for a (partial) refund of a top-up at its channel: Dr the sub-account R, Cr channel_clearing
    (R − fee share), Cr channel_fee_expense fee share, the top-up's channel fee scaled by R / top-up and rounded
    down, as a payment's refund (§3.3): the channel returns that share of its fee."""
    fee = min(top_up_fee_minor, top_up_fee_minor * amount_minor // top_up_minor) if top_up_minor > 0 else 0
    out = [dr(source, amount_minor, currency)]
    if amount_minor > fee:
        out.append(cr(clearing, amount_minor - fee, currency))
    return [*out, cr(fee_expense, fee, currency)] if fee else out


def withdraw(
    *, wallet: str, escrow: str, fee_income: str, amount_minor: int, fee_minor: int, currency: str
) -> list[Posting]:
    """§3.8 (pending): Dr user_wallet N + fee; Cr escrow_bank N; Cr platform_fee_income fee."""
    out = [dr(wallet, amount_minor + fee_minor, currency), cr(escrow, amount_minor, currency)]
    return [*out, cr(fee_income, fee_minor, currency)] if fee_minor else out


def pay(
    *, sources: list[tuple[str, int]], merchant_pending: str, fee_income: str, fee_minor: int, currency: str
) -> list[Posting]:
    """§3.2 with any spendable sub-account (balance, prepaid at its merchant, credit line), or with the balance
    and then the bonus (`sources` in the spending order, §3.11): one debit per source, one transfer."""
    amount_minor = sum(part for _, part in sources)
    out = [*(dr(source, part, currency) for source, part in sources if part),
           cr(merchant_pending, amount_minor - fee_minor, currency)]  # fmt: skip
    return [*out, cr(fee_income, fee_minor, currency)] if fee_minor else out


def bonus_lot_memo(*, lots: list[tuple[str, int]], usage: str, currency: str, debit: bool) -> list[Posting]:
    """The memo lines that keep each bonus lot (9106, §3.11) in step with the bonus pool (2308), in the pool's
    own transfer: spent or taken back (`debit`) Dr lot / Cr 9107, granted or given back the mirror. The pool is
    then always the sum of its lots, and a lot can never give more than is left of it (no overdraft)."""
    take, give = (dr, cr) if debit else (cr, dr)
    out: list[Posting] = []
    for lot, part in lots:
        if part:
            out += [take(lot, part, currency), give(usage, part, currency)]
    return out


def move(*, source: str, target: str, amount_minor: int, currency: str) -> list[Posting]:
    """Between a holder's own sub-accounts: buy a prepaid card from balance, repay the credit line."""
    return [dr(source, amount_minor, currency), cr(target, amount_minor, currency)]


def points_exchange(
    *, points: str, points_issued: str, expense: str, wallet: str, points_count: int, value_minor: int, currency: str
) -> list[Posting]:
    """Points → cash, one transfer balanced per currency: the points return to the platform (XXX) and the
    platform-funded value lands in the balance (CNY)."""
    return [
        dr(points, points_count, POINTS_CURRENCY), cr(points_issued, points_count, POINTS_CURRENCY),
        dr(expense, value_minor, currency), cr(wallet, value_minor, currency),
    ]  # fmt: skip


def points_value_minor(points_count: int, points_per_yuan: int) -> int:
    """Integer exchange: whole fen only, remainder points are not exchanged (the caller sends a multiple)."""
    return points_count * 100 // points_per_yuan
