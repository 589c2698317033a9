"""Channel profit sharing (docs/contracts.md §2; docs/ledger.md §3.12): the partner shares of a final split paid out by
the channel itself (WeChat Pay 分账, Alipay 分账/royalty) from funds it froze for the payment.

When: a payment created with `profit_sharing: true` on wechatpay/alipay, once its split is final (a realtime
split when posted, an escrow split when confirmed and posted). The order is written in the very transaction
that makes the split final (one per split), so it exists exactly once. The worker then asks the cashier's
internal endpoint, always with the same order_no and body (the cashier and the channel are idempotent by it),
until the channel's answer is final: `pending → succeeded | failed`. Each receiver line the channel paid is
posted once (key `ps_…:paid`): Dr 2201 merchant_pending[partner]; Cr 1101 channel_clearing[channel], with a
settlement entry taking the same amount out of the partner's next batch, so it is not paid out twice.
Lines the channel did not pay stay with Juhe's own settlement and payouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from libs.common.db import Tx, UnitOfWork
from libs.common.errors import Problem
from libs.common.ids import new_id
from libs.common.logging import get_logger
from services.settlement.clients.cashier import CashierBusy, CashierClient, CashierRefused
from services.settlement.clients.ledger import LedgerClient, LedgerRefused
from services.settlement.config import Settings
from services.settlement.domain.cycles import DEFAULT_TIMEZONE
from services.settlement.events import PROFIT_SHARING_FINISHED, PROFIT_SHARING_TOPIC
from services.settlement.store import cycles, records
from services.settlement.store import profit_sharing as store
from services.settlement.store.tables import payment_records

log = get_logger("juhe.settlement.profit_sharing")
CHANNELS = frozenset({"wechatpay", "alipay"})
DESCRIPTION_MAX = 80


async def order_for_split(tx: Tx, split: Any) -> str | None:
    """In the transaction that makes `split` final: the channel profit-sharing order of its partner shares
    that have an account at the payment's channel (merged per channel account), or None if there is none."""
    if split["kind"] != "split":
        return None
    payment = (
        (await tx.conn.execute(select(payment_records).where(payment_records.c.payment_id == split["payment_id"])))
        .mappings()
        .first()
    )
    if payment is None or not payment["profit_sharing"] or payment["channel"] not in CHANNELS:
        return None
    channel = str(payment["channel"])
    allocations: dict[str, int] = {k: int(v) for k, v in dict(split["allocations"]).items()}
    known = await records.receivers_by_id(tx.conn, list(allocations))
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for receiver_id, amount in allocations.items():
        receiver = known.get(receiver_id)
        if amount <= 0 or receiver is None or receiver["kind"] != "partner":
            continue
        account = (receiver["channel_accounts"] or {}).get(channel)
        if not account:
            continue
        line = lines.setdefault(
            (account["type"], account["account"]),
            {
                "type": account["type"],
                "account": account["account"],
                "name": account.get("name"),
                "amount_minor": 0,
                "description": f"split of {payment['payment_id']}"[:DESCRIPTION_MAX],
                "parts": [],
            },
        )
        line["amount_minor"] += amount
        line["parts"].append({"receiver_id": receiver_id, "holder_id": receiver["holder_id"], "amount_minor": amount})
    if not lines:
        return None
    order_no = new_id("ps")
    inserted = await store.insert_order(
        tx.conn,
        {
            "order_no": order_no,
            "payment_id": payment["payment_id"],
            "split_id": split["split_id"],
            "merchant_id": payment["merchant_id"],
            "channel": channel,
            "currency": payment["currency"],
            "receivers": list(lines.values()),
            "status": "pending",
        },
    )
    return order_no if inserted else None


def request_body(order: Any) -> dict[str, Any]:
    """Always the same body for an order: the cashier answers a repeat with the stored order."""
    lines = [
        {k: line[k] for k in ("type", "account", "name", "amount_minor", "description")} for line in order["receivers"]
    ]
    return {"order_no": order["order_no"], "receivers": lines, "finish": True}


@dataclass
class ChannelSharing:
    uow: UnitOfWork
    ledger: LedgerClient
    cashier: CashierClient
    settings: Settings

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def read(self, order_no: str) -> dict[str, Any]:
        async with self.uow.read() as conn:
            row = await store.get(conn, order_no)
        return dict(row) if row is not None else {}

    async def step(self, order_no: str) -> None:
        """Ask the channel (through the cashier) once; a final answer is posted and closes the order."""
        order = await self.read(order_no)
        if order.get("status") != "pending":
            return
        try:
            answer = await self.cashier.share_profit(order["payment_id"], request_body(order))
        except CashierBusy as exc:
            await self._later(order, str(exc))
            return
        except CashierRefused as exc:  # the cashier will never take this order (not enabled, not paid …)
            await self._close(order, "failed", answer=None, error=exc.code)
            return
        if answer.get("status") not in ("succeeded", "failed"):
            async with self.uow.begin() as tx:
                await store.seen(
                    tx.conn,
                    order_no,
                    channel_status=str(answer.get("status")),
                    channel_order_id=answer.get("channel_order_id"),
                    result=answer,
                    next_attempt_at=self.now() + timedelta(seconds=self.settings.profit_sharing_poll_seconds),
                )
            return
        await self._close(order, str(answer["status"]), answer=answer, error=None)

    async def _close(
        self, order: dict[str, Any], status: str, *, answer: dict[str, Any] | None, error: str | None
    ) -> None:
        """Post what the channel paid (§3.12, once by key), then close the order once."""
        paid = paid_parts(order, answer)
        transfer_id: str | None = None
        if paid:
            try:
                transfer_id = await self._post(order, paid)
            except (LedgerRefused, Problem) as exc:
                await self._later(order, f"ledger: {exc!r}")
                return
        async with self.uow.begin() as tx:
            payment = (
                await tx.conn.execute(
                    select(payment_records.c.settle_date, payment_records.c.livemode).where(
                        payment_records.c.payment_id == order["payment_id"]
                    )
                )
            ).first()
            today = self.now().astimezone(DEFAULT_TIMEZONE).date()
            due = max(payment[0] or today, today) if payment is not None else today
            livemode = payment is None or bool(payment[1])
            said = answer or {}
            won = await store.finish(
                tx.conn,
                order["order_no"],
                status=status,
                channel_status=said.get("status"),
                channel_order_id=said.get("channel_order_id"),
                result=answer,
                ledger_transfer_id=transfer_id,
                error=error,
                now=self.now(),
            )
            if not won:
                return
            await cycles.add_entries(
                tx.conn,
                [
                    {
                        "source_key": f"{order['order_no']}:{part['receiver_id']}",
                        "holder_id": part["holder_id"],
                        "currency": order["currency"],
                        "amount_minor": -int(part["amount_minor"]),
                        "due_date": due,
                        "kind": "profit_sharing",
                        "payment_id": order["payment_id"],
                        "refund_id": None,
                        "livemode": livemode,
                    }
                    for part in paid
                ],
            )
            tx.publish(
                topic=PROFIT_SHARING_TOPIC,
                type=PROFIT_SHARING_FINISHED,
                subject=order["order_no"],
                data={
                    "order_no": order["order_no"],
                    "payment_id": order["payment_id"],
                    "split_id": order["split_id"],
                    "merchant_id": order["merchant_id"],
                    "channel": order["channel"],
                    "status": status,
                    "paid": [
                        {
                            "receiver_id": p["receiver_id"],
                            "holder_id": p["holder_id"],
                            "amount_minor": int(p["amount_minor"]),
                        }
                        for p in paid
                    ],
                    "error": error,
                    "ledger_transfer_id": transfer_id,
                },
            )

    async def _post(self, order: dict[str, Any], paid: list[dict[str, Any]]) -> str:
        """§3.12 in the payment's book: a test payment's profit sharing moves test money only."""
        currency = order["currency"]
        async with self.uow.read() as conn:
            book = await conn.scalar(
                select(payment_records.c.livemode).where(payment_records.c.payment_id == order["payment_id"])
            )
        book = book is not False
        clearing = await self.ledger.channel_account_id("channel_clearing", order["channel"], currency, livemode=book)
        postings = []
        for part in paid:
            pending = await self.ledger.account_id(part["holder_id"], "merchant_pending", currency, livemode=book)
            postings.append(
                {
                    "account_id": pending,
                    "direction": "debit",
                    "amount_minor": int(part["amount_minor"]),
                    "currency": currency,
                }
            )
        postings.append(
            {
                "account_id": clearing,
                "direction": "credit",
                "currency": currency,
                "amount_minor": sum(int(p["amount_minor"]) for p in paid),
            }
        )
        transfer = await self.ledger.post_transfer(
            idempotency_key=f"{order['order_no']}:paid",
            postings=postings,
            reference=order["payment_id"],
            metadata={"kind": "channel_profit_sharing", "order_no": order["order_no"], "channel": order["channel"]},
        )
        return str(transfer["id"])

    async def _later(self, order: dict[str, Any], error: str) -> None:
        backoff = min(
            self.settings.profit_sharing_poll_seconds * 2 ** min(int(order["attempt_count"]), 10),
            self.settings.profit_sharing_retry_max_seconds,
        )
        async with self.uow.begin() as tx:
            await store.queue.retry_later(tx.conn, order["order_no"], error, self.now() + timedelta(seconds=backoff))
        log.warning("profit sharing deferred", order_no=order["order_no"], error=error)

    async def round(self) -> int:
        """One worker round over due pending orders; returns how many were looked at."""
        now = self.now()
        lease_until = now + timedelta(seconds=self.settings.profit_sharing_retry_max_seconds)
        async with self.uow.begin() as tx:
            due = await store.queue.claim_due(
                tx.conn, now=now, lease_until=lease_until, limit=self.settings.profit_sharing_batch_max
            )
        for order in due:
            await self.step(order["order_no"])
        return len(due)


def paid_parts(order: dict[str, Any], answer: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The receivers' parts of every line the channel reports as succeeded (lines answer in request order)."""
    if not answer:
        return []
    lines = list(order["receivers"])
    results = list(answer.get("receivers") or [])
    if len(results) != len(lines):
        return []
    return [
        part
        for line, result in zip(lines, results, strict=True)
        if result.get("status") == "succeeded" and result.get("account") == line["account"]
        for part in line["parts"]
    ]
