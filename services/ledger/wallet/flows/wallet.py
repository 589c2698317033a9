"""Wallet flows: each resolves the accounts, builds its postings (wallet/domain/postings.py) and runs one
`Movement` (wallet/store/wallet.py). Routes call these and only translate HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import RowMapping

from libs.common import bonus_lots
from libs.common.db import Tx, UnitOfWork
from libs.common.ids import new_id
from services.ledger.domain import chart
from services.ledger.domain import errors as ledger_errors
from services.ledger.domain.errors import LedgerError
from services.ledger.domain.transfers import Posting
from services.ledger.store.writer import LedgerWriter
from services.ledger.wallet.domain import errors
from services.ledger.wallet.domain import postings as p
from services.ledger.wallet.domain.entitlements import CHINA_TZ, Action, HolderType, SubaccountType
from services.ledger.wallet.domain.errors import WalletError
from services.ledger.wallet.domain.kyc import mask
from services.ledger.wallet.domain.payout import payout_details
from services.ledger.wallet.store import bonus as lots
from services.ledger.wallet.store import wallet as store
from services.ledger.wallet.store.wallet import Movement

PLATFORM = "platform"


async def top_up(
    uow: UnitOfWork,
    writer: LedgerWriter,
    *,
    holder_id: str,
    payment_id: str,
    amount_minor: int,
    currency: str,
    channel: str,
    channel_fee_minor: int,
    subaccount: SubaccountType,
    merchant_id: str,
    now: datetime,
    enforce_limits: bool = True,
) -> tuple[RowMapping, bool]:
    """§3.7 after the top-up was paid; idempotent by payment id. `enforce_limits=False` is for money already
    collected whose credit the rules refuse now (a limit used up by a concurrent order since the order's
    pre-check): it is credited all the same, outside the quota, and marked `limits_bypassed`."""
    checks = [(subaccount, Action.TOP_UP)] if enforce_limits else []
    async with uow.begin() as tx:
        await store.precheck(tx.conn, holder_id, checks, amount_minor)
        target = await store.open_subaccount(tx, holder_id, subaccount, currency, merchant_id)
        clearing = await store.shared_account(
            tx, holder_id=PLATFORM, entry=chart.CHANNEL_CLEARING, currency=currency, channel=channel
        )
        fee = await store.shared_account(
            tx, holder_id=PLATFORM, entry=chart.CHANNEL_FEE_EXPENSE, currency=currency, channel=channel
        )
    postings = p.top_up(
        clearing=clearing,
        fee_expense=fee,
        target=target,
        amount_minor=amount_minor,
        fee_minor=channel_fee_minor,
        currency=currency,
    )
    details = {
        "channel": channel,
        "channel_fee_minor": channel_fee_minor,
        "subaccount": subaccount.value,
        "account_id": target,
        "merchant_id": merchant_id,
        **({} if enforce_limits else {"limits_bypassed": True}),
    }
    return await store.execute(
        uow,
        writer,
        Movement(
            holder_id,
            "top_up",
            payment_id,
            amount_minor,
            currency,
            postings,
            checks,
            reference=payment_id,
            details=details,
        ),
        now=now,
    )


async def withdraw(
    uow: UnitOfWork,
    writer: LedgerWriter,
    *,
    holder_id: str,
    withdrawal_id: str,
    amount_minor: int,
    fee_minor: int,
    currency: str,
    timeout_seconds: int,
    now: datetime,
    rail: str = "bank",
    payee: Mapping[str, Any] | None = None,
) -> tuple[RowMapping, bool]:
    """§3.8: a hold, paid out by settlement to the verified bank card (rail `bank`) or to the holder's WeChat
    change / Alipay account (wallet/domain/payout.py); settlement's payout outcome posts or voids it. The
    payee is checked before anything is held: a refused one leaves the wallet untouched."""
    checks = [(SubaccountType.BALANCE, Action.WITHDRAW)]
    async with uow.begin() as tx:
        wallet = await _existing(tx.conn, holder_id, SubaccountType.BALANCE, currency)
        holder = await store.precheck(
            tx.conn,
            holder_id,
            checks,
            amount_minor,
            source_account_id=wallet,
            source_amount_minor=amount_minor + fee_minor,
        )
        payout = payout_details(rail, payee, str(holder["name"]))
        escrow = await store.shared_account(
            tx, holder_id=PLATFORM, entry=chart.ESCROW_BANK, currency=currency, credits_bounded=True
        )
        income = await store.shared_account(tx, holder_id=PLATFORM, entry=chart.PLATFORM_FEE_INCOME, currency=currency)
    postings = p.withdraw(
        wallet=wallet,
        escrow=escrow,
        fee_income=income,
        amount_minor=amount_minor,
        fee_minor=fee_minor,
        currency=currency,
    )
    return await store.execute(
        uow,
        writer,
        _withdrawal(
            holder, withdrawal_id, amount_minor, fee_minor, currency, postings, checks, timeout_seconds, payout
        ),
        now=now,
    )


def _withdrawal(
    holder: RowMapping,
    withdrawal_id: str,
    amount_minor: int,
    fee_minor: int,
    currency: str,
    postings: list[Posting],
    checks: list[tuple[SubaccountType, Action]],
    timeout_seconds: int | None,
    payout: dict[str, Any] | None,
) -> Movement:
    """The withdrawal's operation, built the same way by the request and by the orphan reconciler (so a
    retry of the request replays what the reconciler recorded). Settlement pays out to the card in `details.bank_card`
    (docs/contracts.md §3, wallet withdrawal), or on a channel rail to `details.payout`: it reads them here, never from
    the bus. The payout rides in the hold's metadata too, so an adopted orphan is paid where the user asked."""
    card = holder["bank_card"] or ""
    details = {
        "fee_minor": fee_minor,
        "bank_card": {"number": card, "holder_name": holder["name"]},
        "bank_card_masked": mask(card, 4, 4) if card else None,
        **({"payout": payout} if payout is not None else {}),
    }
    return Movement(
        holder["holder_id"],
        "withdrawal",
        withdrawal_id,
        amount_minor,
        currency,
        postings,
        checks,
        pending=True,
        timeout_seconds=timeout_seconds,
        reference=withdrawal_id,
        details=details,
        transfer_metadata={
            "amount_minor": amount_minor,
            "fee_minor": fee_minor,
            "currency": currency,
            **({"payout": payout} if payout is not None else {}),
        },
    )


async def adopt_orphan_withdrawals(uow: UnitOfWork, *, older_than_seconds: float, limit: int) -> int:
    """Records the operation of each withdrawal hold whose request died after the writer's commit and before
    the operation's (and so publishes `withdrawal.requested`): the user asked for it and the money is held,
    so it is paid out like any other. The insert is `ON CONFLICT DO NOTHING` on the business key: if the
    request (or its retry) records it after all, exactly one of them wins and publishes."""
    async with uow.read() as conn:
        orphans = await store.orphan_withdrawal_holds(conn, older_than_seconds=older_than_seconds, limit=limit)
    for t in orphans:
        meta = t["metadata"]
        withdrawal_id = str(t["idempotency_key"]).removeprefix("withdrawal:")
        async with uow.begin() as tx:
            holder = await store.get_holder(tx.conn, str(meta["holder_id"]))
            if holder is None:
                continue
            m = _withdrawal(
                holder,
                withdrawal_id,
                int(meta["amount_minor"]),
                int(meta["fee_minor"]),
                str(meta["currency"]),
                [],
                [],
                None,
                meta.get("payout"),
            )
            await store.record_operation(tx, m, transfer_id=str(t["id"]), status=str(t["status"]))
    return len(orphans)


async def pay(
    uow: UnitOfWork,
    writer: LedgerWriter,
    *,
    holder_id: str,
    payment_id: str,
    merchant_id: str,
    amount_minor: int,
    platform_fee_minor: int,
    currency: str,
    subaccount: SubaccountType,
    subaccount_id: str | None,
    pending: bool,
    timeout_seconds: int | None,
    now: datetime,
) -> tuple[RowMapping, bool]:
    """Spend from balance, from a prepaid card (only at its merchant) or on the credit line (BNPL).
    Posted at once, or a hold the cashier posts/voids (§3.2)."""
    async with uow.begin() as tx:
        await store.require_holder(tx.conn, holder_id)
        source = await _spend_source(tx.conn, holder_id, subaccount, subaccount_id, merchant_id, currency)
        if subaccount is SubaccountType.CREDIT:
            await _refuse_if_overdue(tx.conn, holder_id, now)
        sources: list[tuple[str, int]] = [(source, amount_minor)]
        memo: list[Posting] = []
        plan: list[tuple[str, int]] = []
        if subaccount is SubaccountType.BALANCE:
            sources, memo, plan = await _balance_then_bonus(tx, holder_id, source, amount_minor, currency)
        await store.precheck(
            tx.conn,
            holder_id,
            [(subaccount, Action.SPEND)],
            amount_minor,
            source_account_id=sources[-1][0],
            source_amount_minor=sources[-1][1],
        )
        merchant = await store.shared_account(
            tx, holder_id=merchant_id, entry=p.SUBACCOUNT_CHART[SubaccountType.MERCHANT_PENDING], currency=currency
        )
        income = await store.shared_account(tx, holder_id=PLATFORM, entry=chart.PLATFORM_FEE_INCOME, currency=currency)
    postings = (
        p.pay(
            sources=sources,
            merchant_pending=merchant,
            fee_income=income,
            fee_minor=platform_fee_minor,
            currency=currency,
        )
        + memo
    )
    details: dict[str, Any] = {
        "merchant_id": merchant_id,
        "subaccount": subaccount.value,
        "account_id": source,
        "platform_fee_minor": platform_fee_minor,
    }
    if len(sources) > 1:
        details |= {"bonus_minor": sources[1][1], "bonus_account_id": sources[1][0], "bonus_lots": dict(plan)}
    return await store.execute(
        uow,
        writer,
        Movement(
            holder_id,
            "payment",
            payment_id,
            amount_minor,
            currency,
            postings,
            [(subaccount, Action.SPEND)],
            pending=pending,
            timeout_seconds=timeout_seconds,
            reference=payment_id,
            details=details,
        ),
        now=now,
    )


async def _balance_then_bonus(
    tx: Tx, holder_id: str, balance: str, amount_minor: int, currency: str
) -> tuple[list[tuple[str, int]], list[Posting], list[tuple[str, int]]]:
    """The spending order of a balance payment (§3.11): the cash balance first, then the top-up bonus for the
    rest, its lots earliest expiry first (wallet/store/bonus.py). Why this order: the bonus is the platform's
    money and is taken back if its top-up is refunded, so it is kept unspent as long as the cash lasts, and the
    bonus that runs out first is spent first. One transfer debits both and the lots' memos; the engine refuses it
    whole (no overdraft) if any part is not there any more when it posts. Returns (sources, lot memo postings,
    lot plan)."""
    everything: tuple[list[tuple[str, int]], list[Posting], list[tuple[str, int]]] = ([(balance, amount_minor)], [], [])
    bonus = await store.get_subaccount_id(tx.conn, holder_id, SubaccountType.BONUS, currency)
    if bonus is None:
        return everything
    from_balance = min(amount_minor, max(await store.available_minor(tx.conn, balance), 0))
    if from_balance == amount_minor:
        return everything
    plan = bonus_lots.spend_plan(
        await lots.open_lots(tx.conn, holder_id, currency),
        await store.available_minor(tx.conn, bonus),
        amount_minor - from_balance,
    )
    if plan is None:  # cash and live bonus together fall short: all from cash, which the engine refuses
        return everything
    memo = p.bonus_lot_memo(lots=plan, usage=await lots.lot_usage(tx, currency), currency=currency, debit=True)
    return [(balance, from_balance), (bonus, amount_minor - from_balance)], memo, plan


async def _existing(conn: Any, holder_id: str, subaccount: SubaccountType, currency: str) -> str:
    """A default sub-account (opened with the holder); a missing holder answers holder_not_found."""
    await store.require_holder(conn, holder_id)
    found = await store.get_subaccount_id(conn, holder_id, subaccount, currency)
    if found is None:
        raise WalletError(
            errors.SUBACCOUNT_NOT_FOUND, f"{holder_id} has no {subaccount.value} sub-account in {currency}"
        )
    return found


async def _spend_source(
    conn: Any, holder_id: str, subaccount: SubaccountType, subaccount_id: str | None, merchant_id: str, currency: str
) -> str:
    if subaccount not in (SubaccountType.BALANCE, SubaccountType.PREPAID, SubaccountType.CREDIT):
        raise WalletError(errors.ENTITLEMENT_DENIED, f"a {subaccount.value} sub-account cannot pay")
    if subaccount is SubaccountType.PREPAID:
        if subaccount_id is not None:
            row = await store.subaccount_row(conn, subaccount_id)
            if row is None or row["wallet_holder_id"] != holder_id or row["subaccount_type"] != "prepaid":
                raise WalletError(errors.SUBACCOUNT_NOT_FOUND, f"no prepaid card {subaccount_id} of this holder")
            if row["merchant_id"] != merchant_id:
                raise WalletError(
                    errors.PREPAID_WRONG_MERCHANT, f"card {subaccount_id} is usable only at {row['merchant_id']}"
                )
            return subaccount_id
        found = await store.get_subaccount_id(conn, holder_id, subaccount, currency, merchant_id)
        if found is None:
            raise WalletError(errors.PREPAID_WRONG_MERCHANT, f"no prepaid card for merchant {merchant_id}")
        return found
    found = await store.get_subaccount_id(conn, holder_id, subaccount, currency)
    if found is None or (subaccount_id is not None and subaccount_id != found):
        raise WalletError(errors.SUBACCOUNT_NOT_FOUND, f"no {subaccount.value} sub-account {subaccount_id or ''}")
    return found


async def transfer(
    uow: UnitOfWork,
    writer: LedgerWriter,
    *,
    holder_id: str,
    transfer_id: str,
    to_holder_id: str,
    amount_minor: int,
    currency: str,
    now: datetime,
) -> tuple[RowMapping, bool]:
    """Balance to another person's balance (转账): Dr user_wallet[from]; Cr user_wallet[to]. The sender's
    `transfer` entitlement and limits apply."""
    checks = [(SubaccountType.BALANCE, Action.TRANSFER)]
    async with uow.begin() as tx:
        source = await _existing(tx.conn, holder_id, SubaccountType.BALANCE, currency)
        if to_holder_id == holder_id:
            raise WalletError(errors.VALIDATION_FAILED, "a transfer needs another holder")
        target = await _existing(tx.conn, to_holder_id, SubaccountType.BALANCE, currency)
        await store.precheck(tx.conn, holder_id, checks, amount_minor, source_account_id=source)
    return await store.execute(
        uow,
        writer,
        Movement(
            holder_id,
            "transfer",
            transfer_id,
            amount_minor,
            currency,
            p.move(source=source, target=target, amount_minor=amount_minor, currency=currency),
            checks,
            reference=transfer_id,
            details={"to_holder_id": to_holder_id, "account_id": target},
        ),
        now=now,
    )


async def buy_prepaid(
    uow: UnitOfWork,
    writer: LedgerWriter,
    *,
    holder_id: str,
    order_id: str,
    merchant_id: str,
    amount_minor: int,
    currency: str,
    now: datetime,
) -> tuple[RowMapping, bool]:
    """Prepaid card bought with the balance: Dr user_wallet, Cr user_prepaid[merchant] (a card paid by a
    channel is a top-up with `subaccount=prepaid`). The merchant earns it when the card is used."""
    checks = [(SubaccountType.BALANCE, Action.SPEND), (SubaccountType.PREPAID, Action.TOP_UP)]
    async with uow.begin() as tx:
        wallet = await _existing(tx.conn, holder_id, SubaccountType.BALANCE, currency)
        await store.precheck(tx.conn, holder_id, checks, amount_minor, source_account_id=wallet)
        card = await store.open_subaccount(tx, holder_id, SubaccountType.PREPAID, currency, merchant_id)
    details = {"merchant_id": merchant_id, "account_id": card}
    return await store.execute(
        uow,
        writer,
        Movement(
            holder_id,
            "prepaid_purchase",
            order_id,
            amount_minor,
            currency,
            p.move(source=wallet, target=card, amount_minor=amount_minor, currency=currency),
            checks,
            reference=order_id,
            details=details,
        ),
        now=now,
    )


async def grant_points(
    uow: UnitOfWork, writer: LedgerWriter, *, holder_id: str, grant_id: str, points_count: int, now: datetime
) -> tuple[RowMapping, bool]:
    """Points earned (marketing's rule decided how many): Dr points_issued, Cr user_points (XXX units)."""
    async with uow.begin() as tx:
        await store.require_holder(tx.conn, holder_id)
        points = await store.open_subaccount(tx, holder_id, SubaccountType.POINTS, p.POINTS_CURRENCY)
        issued = await store.shared_account(
            tx, holder_id=PLATFORM, entry=chart.POINTS_ISSUED, currency=p.POINTS_CURRENCY
        )
    postings = [p.dr(issued, points_count, p.POINTS_CURRENCY), p.cr(points, points_count, p.POINTS_CURRENCY)]
    return await store.execute(
        uow,
        writer,
        Movement(
            holder_id,
            "points_grant",
            grant_id,
            points_count,
            p.POINTS_CURRENCY,
            postings,
            [(SubaccountType.POINTS, Action.TOP_UP)],
            reference=grant_id,
        ),
        now=now,
    )


async def exchange_points(
    uow: UnitOfWork,
    writer: LedgerWriter,
    *,
    holder_id: str,
    exchange_id: str,
    points_count: int,
    points_per_yuan: int,
    currency: str,
    now: datetime,
) -> tuple[RowMapping, bool]:
    value_minor = p.points_value_minor(points_count, points_per_yuan)
    if value_minor <= 0 or points_count * 100 % points_per_yuan:
        raise WalletError(errors.POINTS_NOT_EXCHANGEABLE, f"{points_count} points are not a whole number of fen")
    async with uow.begin() as tx:
        points = await _existing(tx.conn, holder_id, SubaccountType.POINTS, p.POINTS_CURRENCY)
        await store.precheck(
            tx.conn, holder_id, [(SubaccountType.POINTS, Action.SPEND)], points_count, source_account_id=points
        )
        wallet = await store.open_subaccount(tx, holder_id, SubaccountType.BALANCE, currency)
        issued = await store.shared_account(
            tx, holder_id=PLATFORM, entry=chart.POINTS_ISSUED, currency=p.POINTS_CURRENCY
        )
        expense = await store.shared_account(tx, holder_id=PLATFORM, entry=chart.MARKETING_EXPENSE, currency=currency)
    postings = p.points_exchange(
        points=points,
        points_issued=issued,
        expense=expense,
        wallet=wallet,
        points_count=points_count,
        value_minor=value_minor,
        currency=currency,
    )
    return await store.execute(
        uow,
        writer,
        Movement(
            holder_id,
            "points_exchange",
            exchange_id,
            points_count,
            p.POINTS_CURRENCY,
            postings,
            [(SubaccountType.POINTS, Action.SPEND)],
            reference=exchange_id,
            details={"value_minor": value_minor, "currency_out": currency},
        ),
        now=now,
    )


# --- BNPL ------------------------------------------------------------------------------------------------
async def set_credit_line(uow: UnitOfWork, *, holder_id: str, limit_minor: int, currency: str) -> RowMapping:
    async with uow.begin() as tx:
        holder = await store.require_holder(tx.conn, holder_id, for_update=True)
        if HolderType(holder["holder_type"]) is not HolderType.PERSON or store.level_of(holder) < 1:
            raise WalletError(errors.ENTITLEMENT_DENIED, "a credit line needs a verified person")
        account_id = await store.open_subaccount(tx, holder_id, SubaccountType.CREDIT, currency)
        row = await store.set_credit_limit(tx.conn, account_id, limit_minor)
        if row is None:
            raise WalletError(errors.CREDIT_LINE_BELOW_DEBT, "the new line is below what is already owed")
    return row


def bill_status(bill: RowMapping, repaid_minor: int, now: datetime) -> str:
    """`paid` once repaid in full; `overdue` (late) after the due time; `open` before."""
    if repaid_minor >= bill["amount_due_minor"]:
        return "paid"
    return "overdue" if now >= bill["due_at"] else "open"


async def _refuse_if_overdue(conn: Any, holder_id: str, now: datetime) -> None:
    for bill in await store.open_bills(conn, holder_id):
        if bill_status(bill, await store.repaid_minor(conn, bill["id"]), now) == "overdue":
            raise WalletError(errors.ENTITLEMENT_DENIED, f"bill {bill['id']} is overdue: credit spending is paused")


async def issue_bill(
    uow: UnitOfWork, *, holder_id: str, currency: str, period: str, due_in_days: int, now: datetime
) -> tuple[RowMapping, bool]:
    """The monthly bill: what is owed on the line and not yet on an unpaid bill. Once per period."""
    async with uow.begin() as tx:
        await store.require_holder(tx.conn, holder_id, for_update=True)  # one biller per holder at a time
        existing = await store.bill_by_period(tx.conn, holder_id, currency, period)
        if existing is not None:
            return existing, False
        account_id = await store.get_subaccount_id(tx.conn, holder_id, SubaccountType.CREDIT, currency)
        rows = await store.accounts_of_kinds(tx.conn, holder_id, ["user_credit"])
        account = next((r for r in rows if r["id"] == account_id), None)
        owed = 0 if account is None else account["debits_posted"] - account["credits_posted"]
        for bill in await store.open_bills(tx.conn, holder_id):
            owed -= max(bill["amount_due_minor"] - await store.repaid_minor(tx.conn, bill["id"]), 0)
        if owed <= 0:
            raise WalletError(errors.NOTHING_TO_BILL, "nothing owed beyond existing bills")
        due = (now.astimezone(CHINA_TZ) + timedelta(days=due_in_days)).replace(microsecond=0)
        row = await store.insert_bill(
            tx.conn, {"id": new_id("bil"), "h": holder_id, "c": currency, "amt": owed, "p": period, "due": due}
        )
        assert row is not None  # the holder row lock serialises billers
    return row, True


async def repay(
    uow: UnitOfWork, writer: LedgerWriter, *, bill_id: str, repayment_id: str, amount_minor: int, now: datetime
) -> tuple[RowMapping, bool, RowMapping]:
    """From the balance: Dr user_wallet, Cr user_credit: the debt shrinks, so the line's available amount
    is restored by the same transfer.

    Exact under concurrency: the transfer also carries the memo postings Dr 9103 bill_repayable[bill] N;
    Cr 9102 N, and that memo account may not go below −(amount due). So the engine, under the account
    locks, refuses the repayment that would exceed the bill, however many arrive at once and on whichever
    replica (the same mechanism as the daily limits); the sum read before is only an early answer."""
    async with uow.begin() as tx:
        bill = await store.get_bill(tx.conn, bill_id)
        if bill is None:
            raise WalletError(errors.BILL_NOT_FOUND, f"no bill {bill_id}")
        remaining = bill["amount_due_minor"] - await store.repaid_minor(tx.conn, bill_id)
        holder_id, currency = bill["holder_id"], bill["currency"]
        wallet = await store.open_subaccount(tx, holder_id, SubaccountType.BALANCE, currency)
        credit = await store.open_subaccount(tx, holder_id, SubaccountType.CREDIT, currency)
        repayable = await store.bill_repayable_account(tx, bill)
        usage = await store.shared_account(
            tx, holder_id=PLATFORM, entry=chart.ENTITLEMENT_QUOTA_USAGE, currency=currency
        )
    existing = None
    async with uow.read() as conn:
        existing = await store.operation_by_key(conn, "repayment", repayment_id)
    if existing is None and amount_minor > remaining:
        raise WalletError(errors.REPAYMENT_TOO_LARGE, f"bill {bill_id} has {remaining} left to repay")
    postings = [
        *p.move(source=wallet, target=credit, amount_minor=amount_minor, currency=currency),
        p.dr(repayable, amount_minor, currency),
        p.cr(usage, amount_minor, currency),
    ]
    try:
        op, replayed = await store.execute(
            uow,
            writer,
            Movement(
                holder_id,
                "repayment",
                repayment_id,
                amount_minor,
                currency,
                postings,
                [(SubaccountType.CREDIT, Action.TOP_UP)],
                reference=bill_id,
                details={"bill_id": bill_id},
            ),
            now=now,
        )
    except LedgerError as e:
        if e.spec is ledger_errors.INSUFFICIENT_FUNDS and e.extensions.get("account_id") == repayable:
            raise WalletError(errors.REPAYMENT_TOO_LARGE, f"bill {bill_id}: more than what is left to repay") from e
        raise
    return op, replayed, bill
