"""Channel profit sharing of a paid payment (docs/contracts.md §2; caller: settlement).

Settlement decides who gets what; the cashier executes it at the channel that holds the money: it binds
the receivers (idempotent at both channels), then creates the channel's profit-sharing order on the
payment's channel transaction (WeChat `/v3/profitsharing/orders`, Alipay `alipay.trade.order.settle`).

Idempotent by (payment_id, order_no): the row is written before the channel is called, and the channel's
own order number (`out_order_no`, from the row id) is idempotent at the channel too, so a call that timed
out is simply submitted again with the same number and the same body. A row the channel has not accepted
yet is submitted again by the next POST; one it has accepted is re-queried until final.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem
from libs.common.ids import new_id
from libs.common.logging import get_logger
from services.cashier.connectors.alipay import royalty
from services.cashier.connectors.alipay.client import AlipayConnector
from services.cashier.connectors.base import ChannelError, ChannelUnavailable, Connector, InvalidSignature
from services.cashier.connectors.wechatpay import profitsharing as wxps
from services.cashier.connectors.wechatpay.client import WechatPayConnector
from services.cashier.domain.errors import (
    CHANNEL_UNAVAILABLE,
    PAYMENT_NOT_FOUND,
    PAYMENT_NOT_SUCCEEDED,
    PROFIT_SHARING_NOT_ENABLED,
    PROFIT_SHARING_ORDER_NOT_FOUND,
)
from services.cashier.domain.payments import PaymentStatus, out_trade_no_of, request_fingerprint
from services.cashier.domain.profit_sharing import (
    WECHAT_RELATION_DEFAULT,
    WECHAT_RELATION_OF_TYPE,
    ShareStatus,
    line_status,
    order_status,
)
from services.cashier.domain.records import PaymentRecord, ShareOrderRecord
from services.cashier.flows.context import Cashier
from services.cashier.store.payments import get_payment_unscoped
from services.cashier.store.profit_sharing import get_order, insert_order, mark_share_refused, record_share_answer

log = get_logger("juhe.cashier.profit_sharing")

FAILURE_MESSAGE_MAX_CHARS = 500


@dataclass(frozen=True, slots=True)
class ShareLine:
    type: str  # the channel's receiver type: WeChat MERCHANT_ID | PERSONAL_OPENID; Alipay userId | loginName
    account: str
    name: str | None
    amount_minor: int
    description: str


@dataclass(frozen=True, slots=True)
class ShareDraft:
    order_no: str
    receivers: tuple[ShareLine, ...]
    finish: bool

    def fingerprint(self) -> str:
        return request_fingerprint(
            {
                "order_no": self.order_no,
                "finish": self.finish,
                "receivers": [[r.type, r.account, r.name, r.amount_minor, r.description] for r in self.receivers],
            }
        )


@dataclass(frozen=True, slots=True)
class ChannelAnswer:
    """What the channel said about the order: per line (in request order) its status and reason."""

    accepted: bool
    channel_final: bool
    channel_order_id: str | None
    lines: list[tuple[ShareStatus, str | None]]


def order_view(row: ShareOrderRecord) -> dict[str, Any]:
    return {
        "payment_id": row.payment_id,
        "order_no": row.order_no,
        "channel": row.channel,
        "status": row.status,
        "channel_order_id": row.channel_order_id,
        "receivers": [
            {
                "account": r["account"],
                "amount_minor": r["amount_minor"],
                "status": r["status"],
                "fail_reason": r["fail_reason"],
            }
            for r in row.receivers
        ],
    }


async def share_payment(cashier: Cashier, *, payment_id: str, draft: ShareDraft) -> dict[str, Any]:
    """Create (or return) the profit-sharing order `draft.order_no` of a succeeded profit-sharing payment."""
    fingerprint = draft.fingerprint()
    async with cashier.uow.read() as conn:
        payment = await get_payment_unscoped(conn, payment_id)
        existing = await get_order(conn, payment_id=payment_id, order_no=draft.order_no)
    if payment is None:
        raise Problem(PAYMENT_NOT_FOUND, f"payment {payment_id} does not exist")
    if existing is None:
        _check_shareable(payment)
        order_id = new_id("pso")
        async with cashier.uow.begin() as tx:
            existing = await insert_order(
                tx.conn,
                {
                    "id": order_id,
                    "payment_id": payment.id,
                    "merchant_id": payment.merchant_id,
                    "order_no": draft.order_no,
                    "request_sha256": fingerprint,
                    "channel": payment.channel,
                    "channel_trade_no": payment.channel_trade_no,
                    "out_order_no": out_trade_no_of(order_id),
                    "finish": draft.finish,
                    "status": ShareStatus.PROCESSING.value,
                    "receivers": [
                        {
                            "type": r.type,
                            "account": r.account,
                            "name": r.name,
                            "amount_minor": r.amount_minor,
                            "description": r.description,
                            "status": ShareStatus.PROCESSING.value,
                            "fail_reason": None,
                        }
                        for r in draft.receivers
                    ],
                },
            )
        if existing is None:  # a concurrent request with the same order number won the insert
            async with cashier.uow.read() as conn:
                existing = await get_order(conn, payment_id=payment_id, order_no=draft.order_no)
            assert existing is not None
    if existing.request_sha256 != fingerprint:
        raise Problem(
            IDEMPOTENCY_KEY_REUSED, f"order_no {draft.order_no} was used with another request", order_no=draft.order_no
        )
    return order_view(await _drive(cashier, existing, submit=True, livemode=payment.livemode))


async def read_share_order(cashier: Cashier, *, payment_id: str, order_no: str) -> dict[str, Any]:
    """The order as stored, re-queried at the channel while it is not final (never submitted from here)."""
    async with cashier.uow.read() as conn:
        payment = await get_payment_unscoped(conn, payment_id)
        row = await get_order(conn, payment_id=payment_id, order_no=order_no)
    if payment is None:
        raise Problem(PAYMENT_NOT_FOUND, f"payment {payment_id} does not exist")
    if row is None:
        raise Problem(PROFIT_SHARING_ORDER_NOT_FOUND, f"payment {payment_id} has no profit-sharing order {order_no}")
    return order_view(await _drive(cashier, row, submit=False, livemode=payment.livemode))


def _check_shareable(payment: PaymentRecord) -> None:
    if not payment.profit_sharing or payment.channel not in ("wechatpay", "alipay"):
        raise Problem(PROFIT_SHARING_NOT_ENABLED, f"payment {payment.id} was not created with profit_sharing: true")
    if payment.status != PaymentStatus.SUCCEEDED or not payment.channel_trade_no:
        raise Problem(PAYMENT_NOT_SUCCEEDED, f"payment {payment.id} is {payment.status}", payment_status=payment.status)


async def _drive(cashier: Cashier, row: ShareOrderRecord, *, submit: bool, livemode: bool) -> ShareOrderRecord:
    """Bring a processing order forward: submit it (POST) when the channel has not accepted it yet, else ask; at the
    channel config of the payment's mode (`livemode`: a merchant may hold a test and a live one)."""
    if row.status != ShareStatus.PROCESSING:
        return row
    try:
        connector = await cashier.connectors.get(row.merchant_id, row.channel, livemode=livemode)
        if row.submitted_at is None and submit:
            answer = await _submit(connector, row)
        else:
            answer = await _query(connector, row)
    except ChannelError as exc:
        if exc.retryable:
            return _unavailable(row, submit, f"{exc.code}: {exc.message}")
        if row.submitted_at is not None or not submit:
            log.warning("profit sharing query refused", order_id=row.id, code=exc.code)
            return row  # the order exists at the channel (or was never sent): keep what we know
        return await _record_refusal(cashier, row, exc)
    except (ChannelUnavailable, InvalidSignature, Problem) as exc:
        return _unavailable(row, submit, repr(exc))
    if answer is None:
        return row
    return await _record(cashier, row, answer)


def _unavailable(row: ShareOrderRecord, submit: bool, reason: str) -> ShareOrderRecord:
    log.info("profit sharing channel unavailable", order_id=row.id, reason=reason[:200])
    if submit and row.submitted_at is None:
        raise Problem(
            CHANNEL_UNAVAILABLE,
            "the channel did not take the profit-sharing order; retry with the same order_no",
            order_no=row.order_no,
        )
    return row  # accepted earlier (or a read): the stored state stands until the channel answers


async def _record(cashier: Cashier, row: ShareOrderRecord, answer: ChannelAnswer) -> ShareOrderRecord:
    receivers = [
        {**line, "status": status.value, "fail_reason": reason}
        for line, (status, reason) in zip(row.receivers, answer.lines, strict=True)
    ]
    status = order_status([s for s, _ in answer.lines], channel_final=answer.channel_final)
    async with cashier.uow.begin() as tx:
        updated = await record_share_answer(
            tx.conn,
            row,
            status=status,
            receivers=receivers,
            submitted_at=cashier.clock() if answer.accepted and row.submitted_at is None else None,
            channel_order_id=answer.channel_order_id[:64] if answer.channel_order_id else None,
        )
        if updated is None:  # a concurrent request recorded the final answer first
            updated = await get_order(tx.conn, payment_id=row.payment_id, order_no=row.order_no)
    assert updated is not None  # an order is never deleted
    return updated


async def _record_refusal(cashier: Cashier, row: ShareOrderRecord, exc: ChannelError) -> ShareOrderRecord:
    """The channel refused the order itself (over the ratio, trade not frozen…): final, nothing moved."""
    reason = exc.code[:64]
    receivers = [{**line, "status": ShareStatus.FAILED.value, "fail_reason": reason} for line in row.receivers]
    async with cashier.uow.begin() as tx:
        updated = await mark_share_refused(
            tx.conn,
            row,
            receivers=receivers,
            failure_code=reason,
            failure_message=exc.message[:FAILURE_MESSAGE_MAX_CHARS],
        )
        if updated is None:
            updated = await get_order(tx.conn, payment_id=row.payment_id, order_no=row.order_no)
    assert updated is not None  # an order is never deleted
    log.info("profit sharing refused by the channel", order_id=row.id, code=exc.code)
    return updated


# ------------------------------------------------------------------------------------------- channels


async def _submit(connector: Connector, row: ShareOrderRecord) -> ChannelAnswer | None:
    if isinstance(connector, WechatPayConnector):
        pairs = dict.fromkeys((r["type"], r["account"]) for r in row.receivers)
        for kind, account in pairs:
            await wxps.add_receiver(
                connector,
                type=kind,
                account=account,
                relation_type=WECHAT_RELATION_OF_TYPE.get(kind, WECHAT_RELATION_DEFAULT),
            )
        lines = [
            wxps.ShareReceiver(
                type=r["type"], account=r["account"], amount_minor=r["amount_minor"], description=r["description"]
            )
            for r in row.receivers
        ]
        order = await wxps.create_order(
            connector,
            transaction_id=row.channel_trade_no,
            out_order_no=row.out_order_no,
            receivers=lines,
            unfreeze_unsplit=row.finish,
        )
        return _wechat_answer(row, order)
    if isinstance(connector, AlipayConnector):
        names = {r["account"]: r["name"] for r in row.receivers if r.get("name")}
        await royalty.bind_receivers(
            connector,
            out_request_no=f"bind{row.out_order_no}",
            receivers=list(dict.fromkeys((r["type"], r["account"]) for r in row.receivers)),
            names=names,
        )
        settled = await royalty.settle(
            connector,
            out_request_no=row.out_order_no,
            trade_no=row.channel_trade_no,
            finish=row.finish,
            lines=[
                royalty.RoyaltyLine(
                    trans_in=r["account"],
                    amount_minor=r["amount_minor"],
                    desc=r["description"],
                    trans_in_type=r["type"],
                )
                for r in row.receivers
            ],
        )
        try:
            details = await royalty.settle_query(
                connector, out_request_no=row.out_order_no, trade_no=row.channel_trade_no
            )
        except (ChannelUnavailable, ChannelError, InvalidSignature) as exc:
            # Accepted (sync settle answered 10000); the lines' states come with the next query.
            log.info("settle accepted, query failed", order_id=row.id, error=repr(exc))
            processing: list[tuple[ShareStatus, str | None]] = [(ShareStatus.PROCESSING, None)] * len(row.receivers)
            return ChannelAnswer(True, False, settled.settle_no, processing)
        return _alipay_answer(row, details, settled.settle_no)
    raise ChannelError("PROFIT_SHARING_NOT_SUPPORTED", f"{connector.channel} has no profit sharing")


async def _query(connector: Connector, row: ShareOrderRecord) -> ChannelAnswer | None:
    if isinstance(connector, WechatPayConnector):
        order = await wxps.query_order(connector, out_order_no=row.out_order_no, transaction_id=row.channel_trade_no)
        return _wechat_answer(row, order)
    if isinstance(connector, AlipayConnector):
        details = await royalty.settle_query(connector, out_request_no=row.out_order_no, trade_no=row.channel_trade_no)
        return _alipay_answer(row, details, row.channel_order_id)
    return None


def _wechat_answer(row: ShareOrderRecord, order: wxps.ShareOrder) -> ChannelAnswer:
    by_receiver = {(r.type, r.account): r for r in order.receivers}
    lines: list[tuple[ShareStatus, str | None]] = []
    for line in row.receivers:
        result = by_receiver.get((line["type"], line["account"]))
        if result is None:
            lines.append((ShareStatus.PROCESSING, None))
        else:
            lines.append((line_status("wechatpay", result.result), result.fail_reason))
    return ChannelAnswer(True, order.state == "FINISHED", order.order_id, lines)


def _alipay_answer(row: ShareOrderRecord, details: list[royalty.SettleDetail], settle_no: str | None) -> ChannelAnswer:
    by_account = {d.trans_in: d for d in details}
    lines: list[tuple[ShareStatus, str | None]] = []
    for line in row.receivers:
        detail = by_account.get(line["account"])
        if detail is None:
            lines.append((ShareStatus.PROCESSING, None))
            continue
        status = line_status("alipay", detail.state)
        lines.append((status, detail.state if status is ShareStatus.FAILED else None))
    return ChannelAnswer(True, bool(details), settle_no, lines)
