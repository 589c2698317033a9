"""The big wallet's sub-accounts in the chart (domain/chart.py) and the postings of each wallet flow
(docs/ledger.md §3.7, §3.8, §3.11+).

Each function returns the postings of ONE transfer, balanced per currency; the store adds the entitlement
quota memo postings (code 9101/9102) to the same transfer, so limit and movement are one decision.
"""

from __future__ import annotations

from services.ledger.domain import chart
from services.ledger.domain.chart import ChartAccount
from services.ledger.domain.transfers import Direction, Posting
from services.ledger.wallet.domain.entitlements import SubaccountType

POINTS_CURRENCY = "XXX"  # ISO 4217 "no currency": one unit = one point

SUBACCOUNT_CHART: dict[SubaccountType, ChartAccount] = {
    SubaccountType.BALANCE: chart.USER_WALLET,
    SubaccountType.PREPAID: chart.USER_PREPAID,
    SubaccountType.CREDIT: chart.USER_CREDIT,  # with credit_limit_minor = the BNPL line
    SubaccountType.BANK_CLASS2: chart.BANK_CLASS2_MIRROR,
    SubaccountType.PSP: chart.PSP_MIRROR,
    SubaccountType.POINTS: chart.USER_POINTS,
    SubaccountType.COUPON: chart.USER_COUPON,
    SubaccountType.BONUS: chart.USER_BONUS,  # opened on the first bonus (wallet/events/topups.py)
    SubaccountType.MERCHANT_PENDING: chart.MERCHANT_PENDING,
    SubaccountType.MERCHANT_SETTLED: chart.MERCHANT_SETTLED,
    SubaccountType.MERCHANT_PAYABLE: chart.MERCHANT_PAYABLE,
}
PERSON_SUBACCOUNTS = (
    SubaccountType.BALANCE,
    SubaccountType.POINTS,
    SubaccountType.COUPON,
    SubaccountType.CREDIT,
    SubaccountType.BANK_CLASS2,
    SubaccountType.PSP,
)
MERCHANT_SUBACCOUNTS = (
    SubaccountType.MERCHANT_PENDING,
    SubaccountType.MERCHANT_SETTLED,
    SubaccountType.MERCHANT_PAYABLE,
)
CHART_SUBACCOUNTS = frozenset({SubaccountType.BALANCE, *MERCHANT_SUBACCOUNTS})
"""Opened with the shared `chart:<kind>:<holder>:<currency>` key: the cashier's wallet connector and
settlement look these up too (one user_wallet / merchant_pending per holder and currency)."""
MONEY_SUBACCOUNTS = frozenset(SUBACCOUNT_CHART) - {SubaccountType.POINTS}


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
    *,
    clearing: str,
    fee_expense: str,
    source: str,
    amount_minor: int,
    top_up_minor: int,
    top_up_fee_minor: int,
    currency: str,
) -> list[Posting]:
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
    out = [
        *(dr(source, part, currency) for source, part in sources if part),
        cr(merchant_pending, amount_minor - fee_minor, currency),
    ]
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
        dr(points, points_count, POINTS_CURRENCY),
        cr(points_issued, points_count, POINTS_CURRENCY),
        dr(expense, value_minor, currency),
        cr(wallet, value_minor, currency),
    ]


def points_value_minor(points_count: int, points_per_yuan: int) -> int:
    """Integer exchange: whole fen only, remainder points are not exchanged (the caller sends a multiple)."""
    return points_count * 100 // points_per_yuan
