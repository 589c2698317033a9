"""Big wallet API: holders and sub-accounts, entitlements, money flows, My Wallet, merchant balances.

Internal API (behind the gateway, which scopes a user to their own `holder_id`). Every write is idempotent
by a business id (payment id, withdrawal id…); bad input is problem+json and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.engine import RowMapping

from libs.common.errors import FORBIDDEN, IDEMPOTENCY_KEY_REUSED, Problem
from libs.common.internal_auth import CallerLivemode, internal_identity
from libs.common.paging import KnownQueryOnly, PageLimit, cursor_query
from libs.common.web import UowDep
from services.ledger.api.deps import SettingsDep, WriterDep
from services.ledger.domain.accounts import NormalBalance
from services.ledger.store import queries
from services.ledger.wallet.api import schemas as s
from services.ledger.wallet.api.access import holder_scope, is_scoped, require_own
from services.ledger.wallet.domain import entitlements as ent
from services.ledger.wallet.domain import errors, kyc
from services.ledger.wallet.domain.entitlements import Action, HolderType, SubaccountType
from services.ledger.wallet.domain.errors import WalletError
from services.ledger.wallet.domain.postings import MONEY_SUBACCOUNTS, POINTS_CURRENCY
from services.ledger.wallet.flows import wallet as flows
from services.ledger.wallet.store import wallet as store

RECENT_HISTORY_MAX = 20
ENTRY_CURSOR = r"^\d{1,19}$"  # an entry's bigint id: what the history list gives out as `next_cursor`


router = APIRouter(prefix="/v1/wallet", tags=["wallet"], dependencies=[Depends(holder_scope)])


def _now() -> datetime:
    return datetime.now(UTC)


# --- holders ---------------------------------------------------------------------------------------------
def holder_response(row: RowMapping) -> s.HolderResponse:
    phone, card = row["phone"], row["bank_card"]
    return s.HolderResponse(
        holder_id=row["holder_id"],
        holder_type=row["holder_type"],
        name=row["name"],
        document_number_masked=kyc.mask(row["document_number"], 4, 2),
        phone_masked=kyc.mask(phone) if phone else None,
        bank_card_masked=kyc.mask(card, 4, 4) if card else None,
        legal_person=row["legal_person"],
        kyc_status=row["kyc_status"],
        kyc_reason=row["kyc_reason"],
        kyc_level=store.level_of(row),
        created_at=row["created_at"],
    )


def _holder_values(body: s.HolderOpenRequest) -> dict[str, Any]:
    """Checksums first: a typo never reaches the identity provider."""
    if body.holder_type is HolderType.PERSON:
        if body.resident_id is None or body.phone is None:
            raise Problem(errors.VALIDATION_FAILED, "a person needs resident_id and phone")
        if body.credit_code or body.legal_person or body.settlement_account:
            raise Problem(errors.VALIDATION_FAILED, "credit_code, legal_person, settlement_account are for merchants")
        document = kyc.check_resident_id(body.resident_id)
        phone: str | None = kyc.check_phone(body.phone)
        card = kyc.check_bank_card(body.bank_card) if body.bank_card else None
        extra: dict[str, str | None] = {"legal_person": None, "settlement_account": None}
    else:
        if body.credit_code is None or body.legal_person is None or body.settlement_account is None:
            raise Problem(errors.VALIDATION_FAILED, "a merchant needs credit_code, legal_person, settlement_account")
        if body.resident_id or body.bank_card:
            raise Problem(errors.VALIDATION_FAILED, "resident_id and bank_card are for persons")
        document = kyc.check_credit_code(body.credit_code)
        phone = kyc.check_phone(body.phone) if body.phone else None
        card = None
        settlement = body.settlement_account.replace(" ", "")
        if not settlement.isdigit() or not 8 <= len(settlement) <= 32:
            raise Problem(errors.VALIDATION_FAILED, "settlement_account is a bank account number (8-32 digits)")
        extra = {"legal_person": body.legal_person, "settlement_account": settlement}
    values = {
        "holder_id": body.holder_id,
        "holder_type": body.holder_type.value,
        "name": body.name,
        "document_number": document,
        "phone": phone,
        "bank_card": card,
        **extra,
    }
    return {**values, "body_hash": store.body_hash({**values, "currency": body.currency})}


@router.post("/holders", status_code=status.HTTP_201_CREATED)
async def open_holder(body: s.HolderOpenRequest, uow: UowDep, response: Response, request: Request) -> s.HolderResponse:
    """Opens the master account and its default sub-accounts (201); a repeat of the same body is 200. A user
    opens only its own person holder, a merchant only its own merchant holder."""
    require_own(request, body.holder_id)
    identity = internal_identity(request) if is_scoped(request) else None
    if identity is not None and (identity.kind == "user") != (body.holder_type is HolderType.PERSON):
        raise Problem(FORBIDDEN, f"a {identity.kind} identity cannot open a {body.holder_type.value} holder")
    values = _holder_values(body)
    async with uow.begin() as tx:
        row = await store.insert_holder(tx.conn, values)
        if row is None:
            existing = await store.require_holder(tx.conn, body.holder_id)
            if existing["body_hash"] != values["body_hash"]:
                raise Problem(IDEMPOTENCY_KEY_REUSED, f"holder {body.holder_id} exists with other data")
            response.status_code = status.HTTP_200_OK
            return holder_response(existing)
        await store.open_default_subaccounts(tx, body.holder_id, body.holder_type, body.currency)
    return holder_response(row)


@router.get("/holders/{holder_id}")
async def read_holder(holder_id: str, uow: UowDep) -> s.HolderResponse:
    async with uow.read() as conn:
        return holder_response(await store.require_holder(conn, holder_id))


def entitlement_schema(e: ent.Entitlement) -> s.EntitlementSchema:
    return s.EntitlementSchema(
        allowed=e.allowed,
        single_limit_minor=e.single_limit_minor,
        daily_limit_minor=e.daily_limit_minor,
        monthly_limit_minor=e.monthly_limit_minor,
    )


# --- entitlements ----------------------------------------------------------------------------------------
@router.get("/entitlements")
async def list_entitlements(uow: UowDep) -> list[dict[str, Any]]:
    async with uow.read() as conn:
        overrides = await store.entitlement_overrides(conn)
    keys = sorted({*ent.DEFAULTS, *overrides}, key=str)
    return [
        {
            "holder_type": k[0],
            "kyc_level": k[1],
            "subaccount_type": k[2],
            "action": k[3],
            **ent.effective(overrides, *k).as_dict(),
        }
        for k in keys
    ]


@router.post("/entitlements/changes", status_code=status.HTTP_201_CREATED)
async def change_entitlement(body: s.EntitlementChangeRequest, uow: UowDep) -> s.EntitlementChangeResponse:
    """An audited instruction (who, why, before, after); applies to the current day/month at once."""
    changes: dict[str, Any] = body.model_dump(
        exclude_none=True, include={"allowed", "single_limit_minor", "daily_limit_minor", "monthly_limit_minor"}
    )
    for name in body.clear_limits:
        if name in changes:
            raise Problem(errors.VALIDATION_FAILED, f"{name} is both set and cleared")
        changes[name] = None
    if not changes:
        raise Problem(errors.VALIDATION_FAILED, "nothing to change")
    key = (body.holder_type, body.kyc_level, body.subaccount_type, body.action)
    async with uow.begin() as tx:
        before, after = await store.change_entitlement(tx, key, changes, actor=body.actor, reason=body.reason)
    return s.EntitlementChangeResponse(before=entitlement_schema(before), after=entitlement_schema(after))


@router.get("/entitlements/changes", dependencies=[KnownQueryOnly])
async def list_entitlement_changes(
    uow: UowDep, limit: PageLimit, cursor: Annotated[str | None, cursor_query(r"^ent_[0-9a-z]+$")] = None
) -> s.EntitlementChangeList:
    """The audit of entitlement changes, newest first, in the one list shape (libs.common.paging)."""
    async with uow.read() as conn:
        rows = await store.entitlement_changes(conn, limit + 1, before_id=cursor)
    return s.EntitlementChangeList.of(rows, limit, item=dict, cursor_of=lambda c: str(c["id"]))


# --- flows -----------------------------------------------------------------------------------------------
def reveals_card(request: Request) -> bool:
    """Settlement (a service) and the platform read a withdrawal's full card; the user (or a merchant)
    sees it masked, as everywhere else in the wallet."""
    return not is_scoped(request)


RevealDep = Annotated[bool, Depends(reveals_card)]


def operation_response(
    row: RowMapping, *, replayed: bool = False, status_override: str | None = None, reveal_card: bool = True
) -> s.OperationResponse:
    details = {k: v for k, v in row["details"].items() if k != "body_hash"}
    card = details.get("bank_card")
    if isinstance(card, dict) and not reveal_card:
        details["bank_card"] = {**card, "number": details.get("bank_card_masked")}
    return s.OperationResponse(
        id=row["id"],
        holder_id=row["holder_id"],
        kind=row["kind"],
        idempotency_key=row["idempotency_key"],
        transfer_id=row["transfer_id"],
        status=status_override or row["status"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        details=details,
        created_at=row["created_at"],
        replayed=replayed,
    )


def _answer(result: tuple[RowMapping, bool], response: Response, reveal_card: bool = True) -> s.OperationResponse:
    row, replayed = result
    response.status_code = status.HTTP_200_OK if replayed else status.HTTP_201_CREATED
    return operation_response(row, replayed=replayed, reveal_card=reveal_card)


@router.post("/holders/{holder_id}/top-ups", status_code=201)
async def top_up(
    holder_id: str, body: s.TopUpRequest, uow: UowDep, writer: WriterDep, response: Response
) -> s.OperationResponse:
    """Called by the cashier once the top-up payment succeeded; idempotent by `payment_id` (§3.7)."""
    sub = SubaccountType(body.subaccount_type)
    if (sub is SubaccountType.PREPAID) != (body.merchant_id is not None):
        raise Problem(errors.VALIDATION_FAILED, "merchant_id is required for, and only for, a prepaid top-up")
    if body.channel_fee_minor > body.amount_minor:
        raise Problem(errors.VALIDATION_FAILED, "channel_fee_minor exceeds amount_minor")
    return _answer(
        await flows.top_up(
            uow,
            writer,
            holder_id=holder_id,
            payment_id=body.payment_id,
            amount_minor=body.amount_minor,
            currency=body.currency,
            channel=body.channel,
            channel_fee_minor=body.channel_fee_minor,
            subaccount=sub,
            merchant_id=body.merchant_id or "",
            now=_now(),
        ),
        response,
    )


@router.post("/holders/{holder_id}/withdrawals", status_code=201)
async def withdraw(
    holder_id: str,
    body: s.WithdrawalRequest,
    uow: UowDep,
    writer: WriterDep,
    settings: SettingsDep,
    response: Response,
    reveal: RevealDep,
    request: Request,
) -> s.OperationResponse:
    """A pending hold (§3.8) paid out to the verified bank card (`rail: bank`), or to the holder's WeChat
    change / Alipay account (`rail` + `payee`); `withdrawal.requested` on `ledger.wallet` tells settlement,
    which pays out, then posts or voids it. The fee of a user's own request is the platform's
    (`wallet_withdrawal_fee_minor`), never the user's choice."""
    if is_scoped(request) and body.fee_minor != settings.wallet_withdrawal_fee_minor:
        raise Problem(errors.VALIDATION_FAILED, f"the withdrawal fee is {settings.wallet_withdrawal_fee_minor}")
    return _answer(
        await flows.withdraw(
            uow,
            writer,
            holder_id=holder_id,
            withdrawal_id=body.withdrawal_id,
            amount_minor=body.amount_minor,
            fee_minor=body.fee_minor,
            currency=body.currency,
            timeout_seconds=settings.wallet_withdrawal_hold_seconds,
            now=_now(),
            rail=body.rail,
            payee=body.payee.model_dump(exclude_none=True) if body.payee else None,
        ),
        response,
        reveal,
    )


@router.post("/holders/{holder_id}/payments", status_code=201)
async def pay(
    holder_id: str, body: s.PaymentRequest, uow: UowDep, writer: WriterDep, response: Response, request: Request
) -> s.OperationResponse:
    """Wallet as a payment method: balance, prepaid card (its merchant only) or credit line (BNPL). Holds and
    platform fees are the cashier's to set: a user pays at once and the merchant receives the amount."""
    if is_scoped(request) and (body.pending or body.platform_fee_minor):
        raise Problem(FORBIDDEN, "holds and platform fees are set by the cashier, not by the payer")
    if body.platform_fee_minor >= body.amount_minor:
        raise Problem(errors.VALIDATION_FAILED, "platform_fee_minor must be below amount_minor")
    if body.timeout_seconds is not None and not body.pending:
        raise Problem(errors.VALIDATION_FAILED, "timeout_seconds applies to a pending payment only")
    return _answer(
        await flows.pay(
            uow,
            writer,
            holder_id=holder_id,
            payment_id=body.payment_id,
            merchant_id=body.merchant_id,
            amount_minor=body.amount_minor,
            platform_fee_minor=body.platform_fee_minor,
            currency=body.currency,
            subaccount=SubaccountType(body.subaccount_type),
            subaccount_id=body.subaccount_id,
            pending=body.pending,
            timeout_seconds=body.timeout_seconds,
            now=_now(),
        ),
        response,
    )


@router.post("/holders/{holder_id}/transfers", status_code=201)
async def transfer(
    holder_id: str, body: s.WalletTransferRequest, uow: UowDep, writer: WriterDep, response: Response
) -> s.OperationResponse:
    """Balance to another holder's balance; the sender's `transfer` entitlement and limits apply."""
    return _answer(
        await flows.transfer(
            uow,
            writer,
            holder_id=holder_id,
            transfer_id=body.transfer_id,
            to_holder_id=body.to_holder_id,
            amount_minor=body.amount_minor,
            currency=body.currency,
            now=_now(),
        ),
        response,
    )


@router.post("/holders/{holder_id}/prepaid-cards", status_code=201)
async def buy_prepaid(
    holder_id: str, body: s.PrepaidPurchaseRequest, uow: UowDep, writer: WriterDep, response: Response
) -> s.OperationResponse:
    return _answer(
        await flows.buy_prepaid(
            uow,
            writer,
            holder_id=holder_id,
            order_id=body.order_id,
            merchant_id=body.merchant_id,
            amount_minor=body.amount_minor,
            currency=body.currency,
            now=_now(),
        ),
        response,
    )


@router.post("/holders/{holder_id}/points/grants", status_code=201)
async def grant_points(
    holder_id: str, body: s.PointsGrantRequest, uow: UowDep, writer: WriterDep, response: Response
) -> s.OperationResponse:
    return _answer(
        await flows.grant_points(
            uow, writer, holder_id=holder_id, grant_id=body.grant_id, points_count=body.points, now=_now()
        ),
        response,
    )


@router.post("/holders/{holder_id}/points/exchanges", status_code=201)
async def exchange_points(
    holder_id: str,
    body: s.PointsExchangeRequest,
    uow: UowDep,
    writer: WriterDep,
    settings: SettingsDep,
    response: Response,
) -> s.OperationResponse:
    return _answer(
        await flows.exchange_points(
            uow,
            writer,
            holder_id=holder_id,
            exchange_id=body.exchange_id,
            points_count=body.points,
            points_per_yuan=settings.wallet_points_per_yuan,
            currency=body.currency,
            now=_now(),
        ),
        response,
    )


@router.get("/operations")
async def find_operation(
    uow: UowDep,
    reveal: RevealDep,
    request: Request,
    kind: Annotated[str, Query(pattern=r"^[a-z_]{1,32}$")],
    idempotency_key: Annotated[str, Query(min_length=1, max_length=128)],
) -> s.OperationResponse:
    """The operation of a business id, e.g. `kind=withdrawal&idempotency_key=wd_…`."""
    async with uow.read() as conn:
        row = await store.operation_by_key(conn, kind, idempotency_key)
        if row is None:
            raise WalletError(errors.OPERATION_NOT_FOUND, f"no {kind} operation {idempotency_key}")
        require_own(request, row["holder_id"])
        transfer = await queries.get_transfer(conn, row["transfer_id"])
    return operation_response(row, status_override=transfer.status.value if transfer else None, reveal_card=reveal)


@router.get("/operations/{operation_id}")
async def read_operation(operation_id: str, uow: UowDep, reveal: RevealDep, request: Request) -> s.OperationResponse:
    """The transfer's status is the truth (a hold nobody finished expires by itself). Settlement reads a
    withdrawal's payout card here (`details.bank_card`)."""
    async with uow.read() as conn:
        row = await store.get_operation(conn, operation_id)
        if row is None:
            raise WalletError(errors.OPERATION_NOT_FOUND, f"no wallet operation {operation_id}")
        require_own(request, row["holder_id"])
        transfer = await queries.get_transfer(conn, row["transfer_id"])
    return operation_response(row, status_override=transfer.status.value if transfer else None, reveal_card=reveal)


@router.post("/operations/{operation_id}/post")
async def post_operation(operation_id: str, uow: UowDep, writer: WriterDep) -> s.OperationResponse:
    """Settlement: the payout to the bank card succeeded (or the cashier confirmed a held payment)."""
    row, _ = await store.finish_hold(uow, writer, operation_id, post=True)
    return operation_response(row)


@router.post("/operations/{operation_id}/void")
async def void_operation(operation_id: str, uow: UowDep, writer: WriterDep) -> s.OperationResponse:
    """Settlement: the payout failed; the hold is released and the user's balance is whole again."""
    row, _ = await store.finish_hold(uow, writer, operation_id, post=False)
    return operation_response(row)


# --- BNPL ------------------------------------------------------------------------------------------------
async def bill_response(conn: Any, row: RowMapping) -> s.BillResponse:
    repaid = await store.repaid_minor(conn, row["id"])
    return s.BillResponse(
        id=row["id"],
        holder_id=row["holder_id"],
        currency=row["currency"],
        period=row["period"],
        amount_due_minor=row["amount_due_minor"],
        repaid_minor=repaid,
        status=flows.bill_status(row, repaid, _now()),
        due_at=row["due_at"],
    )


@router.put("/holders/{holder_id}/credit-line")
async def set_credit_line(holder_id: str, body: s.CreditLineRequest, uow: UowDep) -> dict[str, Any]:
    row = await flows.set_credit_line(uow, holder_id=holder_id, limit_minor=body.limit_minor, currency=body.currency)
    return {"account_id": row["id"], "credit_limit_minor": row["credit_limit_minor"]}


@router.post("/holders/{holder_id}/bills", status_code=201)
async def issue_bill(holder_id: str, body: s.BillIssueRequest, uow: UowDep, response: Response) -> s.BillResponse:
    row, created = await flows.issue_bill(
        uow,
        holder_id=holder_id,
        currency=body.currency,
        period=body.period,
        due_in_days=body.due_in_days,
        now=_now(),
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    async with uow.read() as conn:
        return await bill_response(conn, row)


@router.get("/bills/{bill_id}")
async def read_bill(bill_id: str, uow: UowDep, request: Request) -> s.BillResponse:
    async with uow.read() as conn:
        row = await store.get_bill(conn, bill_id)
        if row is None:
            raise WalletError(errors.BILL_NOT_FOUND, f"no bill {bill_id}")
        require_own(request, row["holder_id"])
        return await bill_response(conn, row)


@router.post("/bills/{bill_id}/repayments", status_code=201)
async def repay(
    bill_id: str, body: s.RepaymentRequest, uow: UowDep, writer: WriterDep, response: Response, request: Request
) -> s.OperationResponse:
    """From the balance to the credit line; exact under concurrency (never more than the bill owes)."""
    async with uow.read() as conn:
        bill = await store.get_bill(conn, bill_id)
    if bill is not None:
        require_own(request, bill["holder_id"])
    op, replayed, _ = await flows.repay(
        uow, writer, bill_id=bill_id, repayment_id=body.repayment_id, amount_minor=body.amount_minor, now=_now()
    )
    return _answer((op, replayed), response)


# --- My Wallet -------------------------------------------------------------------------------------------
def balances_of(row: RowMapping) -> s.SubaccountBalances:
    dp, cp, dq, cq = row["debits_posted"], row["credits_posted"], row["debits_pending"], row["credits_pending"]
    debit_normal = row["normal_balance"] == NormalBalance.DEBIT.value
    posted = dp - cp if debit_normal else cp - dp
    out, incoming = (cq, dq) if debit_normal else (dq, cq)
    return s.SubaccountBalances(
        posted_balance_minor=posted,
        available_balance_minor=posted - out,
        pending_out_minor=out,
        pending_in_minor=incoming,
    )


def history_item(r: RowMapping) -> s.HistoryItem:
    amount = r["posted_delta_minor"] or r["pending_delta_minor"]
    return s.HistoryItem(
        entry_id=r["id"],
        account_id=r["account_id"],
        transfer_id=r["transfer_id"],
        operation=r["operation"],
        reference=r["reference"],
        direction=r["direction"],
        kind=r["kind"],
        amount_minor=abs(amount),
        currency=r["currency"],
        created_at=r["created_at"],
    )


@router.get("/holders/{holder_id}/my-wallet")
async def my_wallet(
    holder_id: str, uow: UowDep, recent_limit: Annotated[int, Query(ge=1, le=RECENT_HISTORY_MAX)] = 10
) -> s.MyWalletResponse:
    """Everything in one read (one snapshot, after the writer committed: read-your-writes)."""
    async with uow.read() as conn:
        holder = await store.require_holder(conn, holder_id)
        rows = await store.list_subaccounts(conn, holder_id)
        overrides = await store.entitlement_overrides(conn)
        recent = await store.history(conn, [r["id"] for r in rows], before_id=None, limit=recent_limit)
        bills = [await bill_response(conn, b) for b in await store.open_bills(conn, holder_id)]
    holder_type, level = HolderType(holder["holder_type"]), store.level_of(holder)
    views: list[s.SubaccountView] = []
    totals: dict[str, s.SubaccountBalances] = {}
    points = coupons = 0
    credit = None
    for r in rows:
        sub = SubaccountType(r["subaccount_type"])
        b = balances_of(r)
        rules = {a.value: entitlement_schema(ent.effective(overrides, holder_type, level, sub, a)) for a in Action}
        views.append(
            s.SubaccountView(
                account_id=r["id"],
                subaccount_type=sub.value,
                merchant_id=r["merchant_id"] or None,
                currency=r["currency"],
                status=r["status"],
                credit_limit_minor=r["credit_limit_minor"],
                balances=b,
                entitlements=rules,
            )
        )
        if sub is SubaccountType.POINTS and r["currency"] == POINTS_CURRENCY:
            points += b.posted_balance_minor
        elif sub in MONEY_SUBACCOUNTS:
            zero = s.SubaccountBalances(
                posted_balance_minor=0, available_balance_minor=0, pending_out_minor=0, pending_in_minor=0
            )
            t = totals.setdefault(r["currency"], zero)
            for field in ("posted_balance_minor", "available_balance_minor", "pending_out_minor", "pending_in_minor"):
                setattr(t, field, getattr(t, field) + getattr(b, field))
            if sub is SubaccountType.COUPON:
                coupons += b.posted_balance_minor
            if sub is SubaccountType.CREDIT:
                credit = {
                    "account_id": r["id"],
                    "limit_minor": r["credit_limit_minor"],
                    "owed_minor": max(-b.posted_balance_minor, 0),
                    "available_minor": r["credit_limit_minor"] + b.available_balance_minor,
                }
    return s.MyWalletResponse(
        holder=holder_response(holder),
        totals=totals,
        subaccounts=views,
        points=points,
        coupons_minor=coupons,
        credit=credit,
        bills=bills,
        recent=[history_item(e) for e in recent],
    )


@router.get("/holders/{holder_id}/subaccounts/{account_id}/history", dependencies=[KnownQueryOnly])
async def subaccount_history(
    holder_id: str,
    account_id: str,
    uow: UowDep,
    limit: PageLimit,
    cursor: Annotated[str | None, cursor_query(ENTRY_CURSOR)] = None,
) -> s.HistoryResponse:
    """Newest first; `next_cursor` pages back in time (the one list shape, libs.common.paging)."""
    async with uow.read() as conn:
        row = await store.subaccount_row(conn, account_id)
        if row is None or row["wallet_holder_id"] != holder_id:
            raise WalletError(errors.SUBACCOUNT_NOT_FOUND, f"no sub-account {account_id} of {holder_id}")
        rows = await store.history(conn, [account_id], before_id=int(cursor) if cursor else None, limit=limit + 1)
    return s.HistoryResponse.of(rows, limit, item=history_item, cursor_of=lambda e: str(e.entry_id))


@router.get("/merchants/{merchant_id}/balances")
async def merchant_balances(
    merchant_id: str, uow: UowDep, livemode: CallerLivemode, currency: str = Query("CNY", pattern=r"^[A-Z]{3}$")
) -> s.MerchantBalancesResponse:
    """The merchant's master view: pending (not yet settled), settled, available to withdraw, in payout, of the
    book of the caller's key mode (docs/ledger.md §2.1); a caller without one (a console) names it with
    `livemode`, else gets both books summed."""
    async with uow.read() as conn:
        rows = await store.accounts_of_kinds(
            conn, merchant_id, ["merchant_pending", "merchant_settled", "merchant_payable"]
        )
    sums = {"merchant_pending": 0, "merchant_settled": 0, "merchant_payable": 0, "available": 0}
    for r in rows:
        if r["currency"] != currency or livemode not in (None, r["livemode"]):
            continue
        b = balances_of(r)
        sums[r["kind"]] += b.posted_balance_minor
        if r["kind"] == "merchant_settled":
            sums["available"] += b.available_balance_minor
    return s.MerchantBalancesResponse(
        merchant_id=merchant_id,
        currency=currency,
        pending_minor=sums["merchant_pending"],
        settled_minor=sums["merchant_settled"],
        available_to_withdraw_minor=sums["available"],
        payout_in_transit_minor=sums["merchant_payable"],
    )
