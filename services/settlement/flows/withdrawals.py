"""Wallet withdrawals (提现, docs/contracts.md §3): `withdrawal.requested` → the card from the ledger → a bank payout →
the wallet hold posted (paid) or voided (not paid).

Why each step is safe to repeat, and a crash anywhere only delays: the row is created in the inbox
transaction of the event (one per operation id); the bank is idempotent by payout_no = the operation id,
so a submit whose answer was lost is answered the same; the ledger's post/void of a hold answers the same
status when repeated; the final status is a compare-and-set, so the bank callback racing our own query
finishes it once. No §3.6 posting: the wallet hold (§3.8) already is the movement of money.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from libs.common.db import Tx, UnitOfWork
from libs.common.errors import Problem
from libs.common.logging import get_logger
from services.settlement.clients.bank import FINAL_STATUSES, BankClient, BankRefused, BankUnavailable
from services.settlement.clients.ledger import LedgerClient, LedgerRefused
from services.settlement.clients.rails import FINAL_REFUSALS, RAIL_CHANNELS, ChannelRails
from services.settlement.config import Settings
from services.settlement.events import WITHDRAWAL_FINISHED, WITHDRAWALS_TOPIC
from services.settlement.flows.rails import channel_answer
from services.settlement.store import withdrawals as store

log = get_logger("juhe.settlement.withdrawals")
BANK_MEMO = "withdrawal"
CHANNEL_REMARK = "Juhe wallet withdrawal"  # shown to the user by WeChat / Alipay (≤ 32 characters)


def payout_of(operation: dict[str, Any]) -> dict[str, Any] | None:
    """The channel rail a withdrawal asked for, from the ledger's operation (`details.payout`:
    {"rail": "wechat_change" | "alipay_account", "payee": openid | 2088… user id, "payee_name"?}); None for the
    bank rail (the verified card in `details.bank_card`, docs/contracts.md §3)."""
    payout = (operation.get("details") or {}).get("payout") or {}
    if payout.get("rail") in RAIL_CHANNELS and payout.get("payee"):
        return dict(payout)
    return None


async def remember_requested(tx: Tx, data: dict[str, Any]) -> None:
    """A withdrawal the wallet asked for (`withdrawal.requested`'s payload, in its inbox transaction): one row
    per operation id; the worker pays it out."""
    await store.insert_requested(
        tx.conn,
        {
            "operation_id": data["operation_id"],
            "holder_id": data["holder_id"],
            "amount_minor": int(data["amount_minor"]),
            "fee_minor": int(data.get("fee_minor") or 0),
            "currency": data["currency"],
            "status": "pending",
        },
    )


@dataclass
class Withdrawals:
    uow: UnitOfWork
    ledger: LedgerClient
    bank: BankClient
    settings: Settings
    channels: ChannelRails | None = None  # the wechat_change / alipay_account rails, through the cashier

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def read(self, operation_id: str) -> dict[str, Any]:
        async with self.uow.read() as conn:
            row = await store.get(conn, operation_id)
        return dict(row) if row is not None else {}

    async def step(self, operation_id: str) -> None:
        """Move one pending withdrawal as far as it can go now; errors leave it pending for the next round."""
        row = await self.read(operation_id)
        if row.get("status") != "pending":
            return
        try:
            if row["submitted_at"] is None:
                operation = await self.ledger.wallet_operation(operation_id)
                if operation.get("status") != "pending":  # expired or finished elsewhere: never pay it
                    await self._finish(row, "failed", None, f"hold_{operation.get('status')}", None)
                    return
                payout = payout_of(operation)
                if payout is not None:  # a channel rail: the payee the user chose, not the card
                    async with self.uow.begin() as tx:
                        await store.set_card(
                            tx.conn, operation_id, payout["payee"], payout.get("payee_name"), rail=payout["rail"]
                        )
                    await self._channel_step(await self.read(operation_id))
                    return
                card = (operation.get("details") or {}).get("bank_card") or {}
                if not card.get("number") or not card.get("holder_name"):
                    await self.apply_outcome(operation_id, "FAILED", "no_bank_card")
                    return
                async with self.uow.begin() as tx:
                    await store.set_card(tx.conn, operation_id, card["number"], card["holder_name"])
                answer = await self.bank.submit(
                    {
                        "payout_no": operation_id,
                        "amount_minor": int(row["amount_minor"]),
                        "currency": row["currency"],
                        "account_no": card["number"],
                        "account_name": card["holder_name"],
                        "notify_url": f"{self.settings.public_base_url.rstrip('/')}/v1/notify/bank",
                        "memo": BANK_MEMO,
                    }
                )
                poll_at = self.now() + timedelta(seconds=self.settings.payout_poll_seconds)
                async with self.uow.begin() as tx:
                    await store.mark_submitted(
                        tx.conn, operation_id, answer["bank_ref"], answer["status"], self.now(), poll_at
                    )
            elif row["rail"] != "bank":
                await self._channel_step(row)
                return
            else:
                answer = await self.bank.query(operation_id)
            if answer["status"] in FINAL_STATUSES:
                await self.apply_outcome(operation_id, answer["status"], answer.get("failure_code"))
        except BankRefused as exc:
            if exc.code in FINAL_REFUSALS:
                await self.apply_outcome(operation_id, "FAILED", "bank_rejected_request")
            else:
                await self._later(operation_id, exc)
        except (BankUnavailable, LedgerRefused, Problem) as exc:
            await self._later(operation_id, exc)

    async def _channel_step(self, row: dict[str, Any]) -> None:
        """The wechat_change / alipay_account rails (clients/rails.py): the hold is posted or voided as for the bank."""
        if self.channels is None:
            raise BankUnavailable("no channel rails configured")
        operation_id = row["operation_id"]
        answer = await channel_answer(
            self.channels,
            row,
            payout_no=operation_id,
            remark=CHANNEL_REMARK,
            confirm_seconds=self.settings.transfer_confirm_seconds,
            now=self.now(),
        )
        next_poll = self.now() + timedelta(seconds=self.settings.payout_poll_seconds)
        async with self.uow.begin() as tx:
            if row["submitted_at"] is None:
                await store.mark_submitted(
                    tx.conn,
                    operation_id,
                    answer["bank_ref"],
                    answer["status"],
                    self.now(),
                    next_poll,
                    answer["user_action"],
                )
            else:
                await store.queue.note_channel_status(tx.conn, operation_id, answer["status"])
        if answer["status"] in FINAL_STATUSES:
            await self.apply_outcome(operation_id, answer["status"], answer.get("failure_code"))

    async def apply_outcome(self, operation_id: str, bank_status: str, failure_code: str | None) -> bool:
        """The bank's final answer: post (paid) or void (not paid) the wallet hold, then close the row once.
        A ledger that cannot be reached leaves the row pending (the next round asks the bank again, which
        answers the same); a ledger that refuses (the hold expired under a paid withdrawal) is recorded for
        a person to look at, never retried into a loop."""
        row = await self.read(operation_id)
        if row.get("status") != "pending":
            return False
        paid = bank_status == "SUCCEEDED"
        try:
            await self.ledger.finish_wallet_operation(operation_id, post=paid)
            outcome = "posted" if paid else "voided"
        except LedgerRefused as exc:
            log.error(
                "wallet hold not finished as the bank decided", operation_id=operation_id, paid=paid, code=exc.code
            )
            outcome = f"refused:{exc.code}"
        return await self._finish(row, "succeeded" if paid else "failed", bank_status, failure_code, outcome)

    async def _finish(
        self,
        row: dict[str, Any],
        status: str,
        bank_status: str | None,
        failure_code: str | None,
        ledger_outcome: str | None,
    ) -> bool:
        operation_id = row["operation_id"]
        async with self.uow.begin() as tx:
            changed = await store.finish(
                tx.conn,
                operation_id,
                status=status,
                bank_status=bank_status,
                failure_code=failure_code,
                ledger_outcome=ledger_outcome,
                now=self.now(),
            )
            if changed:
                tx.publish(
                    topic=WITHDRAWALS_TOPIC,
                    type=WITHDRAWAL_FINISHED,
                    subject=operation_id,
                    data={
                        "operation_id": operation_id,
                        "holder_id": row["holder_id"],
                        "status": status,
                        "amount_minor": int(row["amount_minor"]),
                        "currency": row["currency"],
                        "failure_code": failure_code,
                        "ledger_outcome": ledger_outcome,
                    },
                )
        return changed

    async def pending_by_transfer_no(self, transfer_no: str) -> str | None:
        async with self.uow.read() as conn:
            return await store.queue.pending_by_transfer_no(conn, transfer_no)

    async def _later(self, operation_id: str, exc: Exception) -> None:
        async with self.uow.begin() as tx:
            await store.queue.retry_later(
                tx.conn, operation_id, repr(exc), self.now() + timedelta(seconds=self.settings.payout_poll_seconds)
            )
        log.warning("withdrawal step deferred", operation_id=operation_id, error=repr(exc))

    async def round(self) -> int:
        """One worker round over due pending withdrawals; returns how many were looked at."""
        now = self.now()
        async with self.uow.begin() as tx:
            lease_until = now + timedelta(seconds=self.settings.payout_poll_seconds)
            due = await store.queue.claim_due(
                tx.conn, now=now, limit=self.settings.payout_batch_max, lease_until=lease_until
            )
        for row in due:
            await self.step(row["operation_id"])
        return len(due)
