"""Platform administration: split receivers, split rules, merchant platform fee rates, payment records, wallet
withdrawals (platform-only /v1/settlement)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from libs.common.errors import Problem
from libs.common.ids import new_id
from libs.common.paging import KnownQueryOnly, cursor_query
from libs.common.web import UowDep
from services.settlement.api.deps import LedgerDep, PageLimit, PlatformOnly, SettingsDep
from services.settlement.api.schemas import (
    FeeRateResponse,
    FeeRateUpsertRequest,
    PaymentRecordResponse,
    ProfitSharingOrderResponse,
    ReceiverResponse,
    ReceiverUpsertRequest,
    ShareSchema,
    SplitResponse,
    SplitRuleResponse,
    SplitRuleUpsertRequest,
    WithdrawalListResponse,
    WithdrawalResponse,
)
from services.settlement.domain.errors import (
    PAYMENT_RECORD_NOT_FOUND,
    RECEIVER_NOT_FOUND,
    SPLIT_RULE_NOT_FOUND,
    WITHDRAWAL_NOT_FOUND,
)
from services.settlement.domain.splits import Share, SplitRule, validate_rule
from services.settlement.flows.escrow import confirm
from services.settlement.store import profit_sharing, records, withdrawals
from services.settlement.store.tables import merchant_fee_rates, payment_records, receivers, split_rules

router = APIRouter(prefix="/v1/settlement", tags=["settlement-admin"], dependencies=[PlatformOnly])


@router.put("/receivers/{receiver_id}")
async def put_receiver(receiver_id: str, body: ReceiverUpsertRequest, uow: UowDep) -> ReceiverResponse:
    fields = body.model_dump()
    values = {"receiver_id": receiver_id, **fields}
    async with uow.begin() as tx:
        await tx.conn.execute(
            insert(receivers)
            .values(**values)
            .on_conflict_do_update(index_elements=[receivers.c.receiver_id], set_=fields)
        )
    return ReceiverResponse.model_validate(values)


@router.get("/receivers/{receiver_id}")
async def get_receiver(receiver_id: str, uow: UowDep) -> ReceiverResponse:
    async with uow.read() as conn:
        row = (await conn.execute(select(receivers).where(receivers.c.receiver_id == receiver_id))).mappings().first()
    if row is None:
        raise Problem(RECEIVER_NOT_FOUND, f"receiver {receiver_id} does not exist")
    return ReceiverResponse.model_validate({k: row[k] for k in ReceiverResponse.model_fields})


def _rule_response(row: object) -> SplitRuleResponse:
    data = dict(row)  # type: ignore[call-overload]
    return SplitRuleResponse(**{k: data[k] for k in SplitRuleResponse.model_fields})


@router.put("/merchants/{merchant_id}/split-rule", response_model_exclude_none=True)
async def put_split_rule(merchant_id: str, body: SplitRuleUpsertRequest, uow: UowDep) -> SplitRuleResponse:
    """Validated against the registered receivers and 100 %; a new version applies to later payments only."""
    rule = SplitRule(tuple(Share(**s.model_dump()) for s in body.shares), body.remainder_receiver_id)
    shares = [s.model_dump(exclude_none=True) for s in body.shares]
    async with uow.begin() as tx:
        ids = [s.receiver_id for s in body.shares] + [body.remainder_receiver_id]
        validate_rule(rule, await records.receivers_by_id(tx.conn, ids))
        stmt = insert(split_rules).values(
            rule_id=new_id("spr"),
            merchant_id=merchant_id,
            business_line=body.business_line,
            shares=shares,
            remainder_receiver_id=body.remainder_receiver_id,
            mode=body.mode,
            auto_confirm_seconds=body.auto_confirm_seconds,
        )
        row = (
            (
                await tx.conn.execute(
                    stmt.on_conflict_do_update(
                        constraint="split_rules_merchant_line",
                        set_={
                            "shares": shares,
                            "remainder_receiver_id": body.remainder_receiver_id,
                            "mode": body.mode,
                            "auto_confirm_seconds": body.auto_confirm_seconds,
                            "version": split_rules.c.version + 1,
                            "updated_at": func.now(),
                        },
                    ).returning(split_rules)
                )
            )
            .mappings()
            .one()
        )
    return _rule_response(row)


@router.get("/merchants/{merchant_id}/split-rule", response_model_exclude_none=True)
async def get_split_rule(merchant_id: str, uow: UowDep, business_line: str = "") -> SplitRuleResponse:
    async with uow.read() as conn:
        row = await records.split_rule(conn, merchant_id, business_line)
    if row is None:
        raise Problem(SPLIT_RULE_NOT_FOUND, f"merchant {merchant_id} has no split rule for line '{business_line}'")
    return _rule_response(row)


@router.put("/merchants/{merchant_id}/fee-rate")
async def put_fee_rate(merchant_id: str, body: FeeRateUpsertRequest, uow: UowDep) -> FeeRateResponse:
    async with uow.begin() as tx:
        await tx.conn.execute(
            insert(merchant_fee_rates)
            .values(merchant_id=merchant_id, **body.model_dump())
            .on_conflict_do_update(
                index_elements=[merchant_fee_rates.c.merchant_id], set_={**body.model_dump(), "updated_at": func.now()}
            )
        )
    return FeeRateResponse(merchant_id=merchant_id, platform_fee_rate_bps=body.platform_fee_rate_bps)


@router.get("/payments/{payment_id}")
async def get_payment_record(payment_id: str, uow: UowDep) -> PaymentRecordResponse:
    """Settlement's record of a payment: fees (channel cost, platform fee, margin) and its splits."""
    async with uow.read() as conn:
        row = (
            (await conn.execute(select(payment_records).where(payment_records.c.payment_id == payment_id)))
            .mappings()
            .first()
        )
        splits = await records.splits_for_payment(conn, payment_id)
        orders = await profit_sharing.of_payment(conn, payment_id)
    if row is None:
        raise Problem(PAYMENT_RECORD_NOT_FOUND, f"no record of payment {payment_id}")
    fields = {k: row[k] for k in PaymentRecordResponse.model_fields if k not in ("splits", "profit_sharing_orders")}
    return PaymentRecordResponse(
        **fields,
        splits=[SplitResponse(**{k: s[k] for k in SplitResponse.model_fields}) for s in splits],
        profit_sharing_orders=[
            ProfitSharingOrderResponse.model_validate({k: o[k] for k in ProfitSharingOrderResponse.model_fields})
            for o in orders
        ],
    )


@router.get("/withdrawals", dependencies=[KnownQueryOnly])
async def list_withdrawals(
    uow: UowDep,
    limit: PageLimit,
    holder_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[Literal["pending", "succeeded", "failed"] | None, Query()] = None,
    cursor: Annotated[str | None, cursor_query(r"^[A-Za-z0-9_\-]{1,64}$")] = None,
) -> WithdrawalListResponse:
    """Wallet withdrawals settlement pays out (docs/contracts.md §3), newest first."""
    async with uow.read() as conn:
        rows = await withdrawals.list_withdrawals(
            conn, holder_id=holder_id, status=status, before_id=cursor, limit=limit + 1
        )
    return WithdrawalListResponse.of(rows, limit, cursor_of=lambda w: w.operation_id, item=_withdrawal)


def _withdrawal(row: Any) -> WithdrawalResponse:
    return WithdrawalResponse.model_validate({k: row[k] for k in WithdrawalResponse.model_fields})


@router.get("/withdrawals/{operation_id}")
async def get_withdrawal(operation_id: str, uow: UowDep) -> WithdrawalResponse:
    async with uow.read() as conn:
        row = await withdrawals.get(conn, operation_id)
    if row is None:
        raise Problem(WITHDRAWAL_NOT_FOUND, f"settlement has no withdrawal {operation_id}")
    return WithdrawalResponse.model_validate({k: row[k] for k in WithdrawalResponse.model_fields})


@router.post("/payments/{payment_id}/confirm")
async def confirm_escrow(payment_id: str, uow: UowDep, ledger: LedgerDep, settings: SettingsDep) -> SplitResponse:
    """The platform confirms fulfilment of an escrow (担保交易) payment: its held split is posted, once."""
    split = await confirm(uow, ledger, settings, payment_id, by="platform")
    return SplitResponse(**{k: split[k] for k in SplitResponse.model_fields})


__all__ = ["ShareSchema", "router"]
