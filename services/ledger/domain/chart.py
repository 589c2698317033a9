"""The chart of accounts: every account kind the platform posts to, defined once (docs/ledger.md §2, §3.11).

Why one table: a kind's code, normal side and whether the ledger's own openers bound it against overdraft were
spread over four files, and other services hard-coded `"2201"`. Now the code of a kind is looked up here: the
API derives it when an opener names only the kind (`POST /v1/accounts`), the cashier-event postings, the wallet
and the bulk import open their accounts from these entries, and docs/ledger.md §2 is the same table in prose.

Kinds outside this chart stay possible (`kind` and `code` are open strings, so a later sub-account type needs
no schema change): such an opener names the code itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from services.ledger.domain.accounts import NormalBalance

DEBIT = NormalBalance.DEBIT
CREDIT = NormalBalance.CREDIT


@dataclass(frozen=True, slots=True)
class ChartAccount:
    """One chart-of-accounts entry: its business `kind`, its `code`, the side its balance is reported on, a
    short name, and whether the ledger's own openers (the wallet, the bulk import) open it with
    `debits_must_not_exceed_credits` (a balance that may not go below zero, or below its credit limit)."""

    code: str
    kind: str
    normal_balance: NormalBalance
    name: str
    no_overdraft: bool = False


# --- assets (debit-normal) -------------------------------------------------------------------------------
CHANNEL_CLEARING = ChartAccount("1101", "channel_clearing", DEBIT, "Channel clearing (per channel)")
ESCROW_BANK = ChartAccount("1102", "escrow_bank", DEBIT, "Escrow bank account (credits bounded by debits)")
# --- liabilities (credit-normal) -------------------------------------------------------------------------
MERCHANT_PENDING = ChartAccount("2201", "merchant_pending", CREDIT, "Merchant pending (not yet settled)")
MERCHANT_SETTLED = ChartAccount("2202", "merchant_settled", CREDIT, "Merchant settled (payable)", True)
MERCHANT_PAYABLE = ChartAccount("2203", "merchant_payable", CREDIT, "Merchant payouts in transit", True)
USER_WALLET = ChartAccount("2301", "user_wallet", CREDIT, "Wallet balance", True)
USER_PREPAID = ChartAccount("2302", "user_prepaid", CREDIT, "Prepaid card (per merchant)", True)
USER_CREDIT = ChartAccount("2303", "user_credit", CREDIT, "Credit line (limit = the BNPL line)", True)
BANK_CLASS2_MIRROR = ChartAccount("2304", "bank_class2_mirror", CREDIT, "Bank Class II account mirror", True)
PSP_MIRROR = ChartAccount("2305", "psp_mirror", CREDIT, "PSP account mirror", True)
USER_POINTS = ChartAccount("2306", "user_points", CREDIT, "Points (currency XXX)", True)
USER_COUPON = ChartAccount("2307", "user_coupon", CREDIT, "Coupon value held", True)
USER_BONUS = ChartAccount("2308", "user_bonus", CREDIT, "Top-up bonus pool", True)
WITHDRAWAL_CLEARING = ChartAccount("2401", "withdrawal_clearing", CREDIT, "Withdrawals sent, not yet confirmed")
MIGRATION_SUSPENSE = ChartAccount("2901", "migration_suspense", CREDIT, "Bulk migration suspense (per run)")
# --- equity (credit-normal) ------------------------------------------------------------------------------
OPENING_BALANCE = ChartAccount("3101", "opening_balance", CREDIT, "Opening balances migrated in")
POINTS_ISSUED = ChartAccount("3102", "points_issued", CREDIT, "Points in users' hands (currency XXX)")
# --- income and expenses ---------------------------------------------------------------------------------
PLATFORM_FEE_INCOME = ChartAccount("4101", "platform_fee_income", CREDIT, "Platform fee income")
CHANNEL_FEE_EXPENSE = ChartAccount("5101", "channel_fee_expense", DEBIT, "Channel fee expense (per channel)")
MARKETING_EXPENSE = ChartAccount("5201", "marketing_expense", DEBIT, "Platform-funded marketing expense")
# --- memo accounts (limits and lots; balanced among themselves) ------------------------------------------
ENTITLEMENT_QUOTA = ChartAccount("9101", "entitlement_quota", CREDIT, "Entitlement quota (limit usage)", True)
ENTITLEMENT_QUOTA_USAGE = ChartAccount("9102", "entitlement_quota_usage", CREDIT, "Quota memo counterpart")
BILL_REPAYABLE = ChartAccount("9103", "bill_repayable", CREDIT, "What a BNPL bill may still receive", True)
WALLET_BONUS_REFUNDABLE = ChartAccount(
    "9104", "wallet_bonus_refundable", CREDIT, "Bonus a payment's refunds may still give back", True
)
WALLET_BONUS_REFUNDABLE_USAGE = ChartAccount("9105", "wallet_bonus_refundable_usage", CREDIT, "9104 counterpart")
WALLET_BONUS_LOT = ChartAccount("9106", "wallet_bonus_lot", CREDIT, "What is left of one top-up bonus", True)
WALLET_BONUS_LOT_USAGE = ChartAccount("9107", "wallet_bonus_lot_usage", CREDIT, "9106 counterpart")

CHART: tuple[ChartAccount, ...] = tuple(v for v in list(globals().values()) if isinstance(v, ChartAccount))
BY_KIND: Mapping[str, ChartAccount] = MappingProxyType({entry.kind: entry for entry in CHART})
BY_CODE: Mapping[str, ChartAccount] = MappingProxyType({entry.code: entry for entry in CHART})


def by_kind(kind: str) -> ChartAccount | None:
    """The chart entry of a kind; None for a kind outside the chart (its opener names the code)."""
    return BY_KIND.get(kind)
