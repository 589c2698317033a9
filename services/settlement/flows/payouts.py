"""Payouts (划付): merchant request → ledger instruction → bank → outcome posted (docs/ledger.md §3.6).

Every step is safe to repeat: the ledger keys `po_…`, `po_…:paid`, `po_…:failed` make each posting
happen once, the bank is idempotent by payout_no (= payout id), and the final status is a
compare-and-set, so a bank callback racing our own status query changes things once. The merchant's
settled account (2202) refuses to go below zero in the ledger itself, so two concurrent requests can
never pay out more than was settled.

Test and live never mix (docs/test-mode.md): a payout has the mode of the key that asked for it and moves that
book's accounts only. A test payout never reaches a bank or a channel: once instructed it is simulated as paid at
once (Dr 2203 Cr 1102 in the test book), so a merchant can integrate the whole flow with test keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from libs.common.db import Tx, UnitOfWork
from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem
from libs.common.ids import new_id
from libs.common.logging import get_logger
from services.settlement.clients.bank import FINAL_STATUSES, BankClient, BankRefused, BankUnavailable
from services.settlement.clients.ledger import LedgerClient, LedgerRefused
from services.settlement.clients.rails import FINAL_REFUSALS, ChannelRails
from services.settlement.config import Settings
from services.settlement.domain.errors import (
    LEDGER_UNAVAILABLE,
    PAYOUT_EXCEEDS_SETTLED_BALANCE,
    PAYOUT_NOT_AWAITING_APPROVAL,
    PAYOUT_NOT_FOUND,
)
from services.settlement.events import PAYOUT_FINISHED, PAYOUTS_TOPIC
from services.settlement.flows.rails import channel_answer
from services.settlement.store import payouts as store

log = get_logger("juhe.settlement.payouts")
OVERDRAFT_CODES = frozenset({"insufficient_funds"})
ATTEMPTS_EXHAUSTED = "attempts_exhausted"
CHANNEL_REMARK = "Juhe payout"  # shown to the payee by WeChat / Alipay (≤ 32 characters)


@dataclass(frozen=True, slots=True)
class PayoutDraft:
    amount_minor: int
    currency: str
    account_no: str
    account_name: str
    idempotency_key: str
    rail: str = "bank"  # bank | wechat_change (account_no = openid) | alipay_account (account_no = 2088… user id)
    livemode: bool = True  # the mode of the key that asked: which book it is paid from

    def request_hash(self) -> str:
        body: dict[str, Any] = {
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "account_no": self.account_no,
            "account_name": self.account_name,
        }
        if self.rail != "bank":  # bank payouts keep the hash they had before rails existed
            body["rail"] = self.rail
        if not self.livemode:  # live payouts keep theirs too; a key reused across modes is another body (409)
            body["livemode"] = False
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class Payouts:
    uow: UnitOfWork
    ledger: LedgerClient
    bank: BankClient
    settings: Settings
    channels: ChannelRails | None = None  # the wechat_change / alipay_account rails, through the cashier

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def request(self, holder_id: str, draft: PayoutDraft) -> tuple[dict[str, Any], bool]:
        """Create a payout of settled funds; (payout, created). Refused (422) above the settled balance. At or above
        `payout_approval_threshold_minor` it waits in `pending_approval` (nothing moved) until an operator decides."""
        threshold = self.settings.payout_approval_threshold_minor
        held = 0 < threshold <= draft.amount_minor
        settled = await self.ledger.account_id(holder_id, "merchant_settled", draft.currency, livemode=draft.livemode)
        available = int((await self.ledger.balance(settled))["balances"]["available_balance_minor"])
        async with self.uow.begin() as tx:
            row, created = await store.insert_payout(
                tx.conn,
                {
                    "payout_id": new_id("po"),
                    "holder_id": holder_id,
                    "idempotency_key": draft.idempotency_key,
                    "request_hash": draft.request_hash(),
                    "amount_minor": draft.amount_minor,
                    "currency": draft.currency,
                    "account_no": draft.account_no,
                    "account_name": draft.account_name,
                    "status": "pending_approval" if held else "pending",
                    "rail": draft.rail,
                    "livemode": draft.livemode,
                },
            )
            if not created and row["request_hash"] != draft.request_hash():
                raise Problem(IDEMPOTENCY_KEY_REUSED, "idempotency_key was used for another payout")
            if created and draft.amount_minor > available:
                raise Problem(
                    PAYOUT_EXCEEDS_SETTLED_BALANCE,  # rolls the row back: nothing is recorded
                    f"payout {draft.amount_minor} > settled balance {available}",
                    available_minor=available,
                )
        if not created:
            return dict(row), False
        if held:
            log.info("payout waits for approval", payout_id=row["payout_id"], amount_minor=draft.amount_minor)
            return dict(row), True
        await self._instruct(dict(row), raise_refusal=True)
        await self.step(row["payout_id"])
        return await self.read(row["payout_id"]), True

    async def decide(self, payout_id: str, *, approve: bool, actor: str, reason: str | None) -> dict[str, Any]:
        """A platform operator's decision on a held payout (a compare-and-set: two operators cannot both decide).
        Approved: it becomes an ordinary pending payout and is stepped now (instruction, bank), the settled balance
        checked again by the ledger (a balance spent meanwhile fails it, nothing moved). Rejected: final, with its
        `payout.finished` event; nothing was ever moved."""
        async with self.uow.begin() as tx:
            row = await store.decide(tx.conn, payout_id, approve=approve, actor=actor, reason=reason, now=self.now())
            if row is None:
                if await store.get_payout(tx.conn, payout_id) is None:
                    raise Problem(PAYOUT_NOT_FOUND, f"no payout {payout_id}")
                raise Problem(PAYOUT_NOT_AWAITING_APPROVAL, f"payout {payout_id} is not waiting for approval")
            if not approve:
                tx.publish(
                    topic=PAYOUTS_TOPIC,
                    type=PAYOUT_FINISHED,
                    subject=payout_id,
                    data={
                        "payout_id": payout_id,
                        "holder_id": row["holder_id"],
                        "status": "rejected",
                        "amount_minor": int(row["amount_minor"]),
                        "currency": row["currency"],
                        "failure_code": None,
                        "ledger_transfer_id": None,
                        "livemode": bool(row["livemode"]),
                    },
                )
        log.info("payout decided", payout_id=payout_id, approved=approve, actor=actor)
        if approve:
            await self.step(payout_id)  # errors leave it pending for the worker's next round
        return await self.read(payout_id)

    async def read(self, payout_id: str, holder_id: str | None = None, livemode: bool | None = None) -> dict[str, Any]:
        """The payout ({} when there is none, or it is another holder's, or of the other mode than `livemode`)."""
        async with self.uow.read() as conn:
            row = await store.get_payout(conn, payout_id, holder_id)
        return dict(row) if row is not None and livemode in (None, row["livemode"]) else {}

    async def _instruct(self, payout: dict[str, Any], *, raise_refusal: bool = False) -> bool:
        """§3.6 instruction: Dr 2202 merchant_settled, Cr 2203 merchant_payable. A refusal for lack of
        settled funds (a concurrent payout got there first) fails the payout, nothing moved."""
        holder, currency, amount = payout["holder_id"], payout["currency"], int(payout["amount_minor"])
        book = bool(payout["livemode"])
        try:
            settled = await self.ledger.account_id(holder, "merchant_settled", currency, livemode=book)
            payable = await self.ledger.account_id(holder, "merchant_payable", currency, livemode=book)
            transfer = await self.ledger.post_transfer(
                idempotency_key=payout["payout_id"],
                reference=payout["payout_id"],
                metadata={"kind": "payout"},
                postings=[
                    {"account_id": settled, "direction": "debit", "amount_minor": amount, "currency": currency},
                    {"account_id": payable, "direction": "credit", "amount_minor": amount, "currency": currency},
                ],
            )
        except LedgerRefused as exc:
            if exc.code not in OVERDRAFT_CODES:
                raise
            async with self.uow.begin() as tx:
                await store.finish(
                    tx.conn,
                    payout["payout_id"],
                    status="failed",
                    failure_code="insufficient_settled_balance",
                    outcome_transfer_id=None,
                    bank_status=None,
                    now=self.now(),
                )
            if raise_refusal:
                raise Problem(
                    PAYOUT_EXCEEDS_SETTLED_BALANCE,
                    "the settled balance no longer covers this payout",
                    payout_id=payout["payout_id"],
                ) from exc
            return False
        async with self.uow.begin() as tx:
            await store.mark_instructed(tx.conn, payout["payout_id"], str(transfer["id"]))
        payout["instruction_transfer_id"] = str(transfer["id"])
        return True

    async def step(self, payout_id: str) -> None:
        """Move one pending payout as far as it can go now; errors leave it pending for the next round."""
        payout = await self.read(payout_id)
        if payout.get("status") != "pending":
            return
        try:
            if payout["instruction_transfer_id"] is None and not await self._instruct(payout):
                return
            if not payout["livemode"]:  # test money never reaches a bank or a channel: simulated as paid
                await self.apply_outcome(payout_id, "SUCCEEDED", None)
                return
            if payout["rail"] != "bank":
                await self._channel_step(payout)
                return
            if payout["submitted_at"] is None:
                answer = await self.bank.submit(
                    {
                        "payout_no": payout_id,
                        "amount_minor": int(payout["amount_minor"]),
                        "currency": payout["currency"],
                        "account_no": payout["account_no"],
                        "account_name": payout["account_name"],
                        "notify_url": f"{self.settings.public_base_url.rstrip('/')}/v1/notify/bank",
                    }
                )
                async with self.uow.begin() as tx:
                    await store.mark_submitted(
                        tx.conn,
                        payout_id,
                        answer["bank_ref"],
                        answer["status"],
                        self.now(),
                        self.now() + timedelta(seconds=self.settings.payout_poll_seconds),
                    )
            else:
                answer = await self.bank.query(payout_id)
            if answer["status"] in FINAL_STATUSES:
                await self.apply_outcome(payout_id, answer["status"], answer.get("failure_code"))
        except BankRefused as exc:
            if exc.code in FINAL_REFUSALS:  # the bank / channel will never take this request: undo the instruction
                await self.apply_outcome(payout_id, "FAILED", "bank_rejected_request")
            else:
                await self._later(payout, exc)
        except (BankUnavailable, LedgerRefused, Problem) as exc:
            await self._later(payout, exc)

    async def _channel_step(self, payout: dict[str, Any]) -> None:
        """The wechat_change / alipay_account rails (clients/rails.py): same states and postings as the bank's."""
        if self.channels is None:
            raise BankUnavailable("no channel rails configured")
        answer = await channel_answer(
            self.channels,
            payout,
            payout_no=payout["payout_id"],
            remark=CHANNEL_REMARK,
            confirm_seconds=self.settings.transfer_confirm_seconds,
            now=self.now(),
        )
        next_poll = self.now() + timedelta(seconds=self.settings.payout_poll_seconds)
        async with self.uow.begin() as tx:
            if payout["submitted_at"] is None:
                await store.mark_submitted(
                    tx.conn,
                    payout["payout_id"],
                    answer["bank_ref"],
                    answer["status"],
                    self.now(),
                    next_poll,
                    answer["user_action"],
                )
            else:
                await store.queue.note_channel_status(tx.conn, payout["payout_id"], answer["status"])
        if answer["status"] in FINAL_STATUSES:
            await self.apply_outcome(payout["payout_id"], answer["status"], answer.get("failure_code"))

    async def pending_by_transfer_no(self, transfer_no: str) -> str | None:
        async with self.uow.read() as conn:
            return await store.queue.pending_by_transfer_no(conn, transfer_no)

    async def _later(self, payout: dict[str, Any], exc: Exception) -> None:
        """A step that could not finish: retried after `payout_poll_seconds`, up to `payout_attempts_max`
        failed steps; the last one ends the payout (`_give_up`)."""
        payout_id = payout["payout_id"]
        if int(payout["attempt_count"]) + 1 >= self.settings.payout_attempts_max:
            await self._give_up(payout, exc)
            return
        async with self.uow.begin() as tx:
            await store.queue.retry_later(
                tx.conn, payout_id, repr(exc), self.now() + timedelta(seconds=self.settings.payout_poll_seconds)
            )
        log.warning("payout step deferred", payout_id=payout_id, error=repr(exc))

    async def _give_up(self, payout: dict[str, Any], exc: Exception) -> None:
        """The last allowed attempt failed: the payout ends `failed` (`attempts_exhausted`) by the bank-failure
        path, which gives the instructed amount back to 2202. An instruction whose answer was never stored is
        looked up in the ledger (same key) first. If the ledger cannot say, the payout stays pending and the
        next round tries again: it never ends failed with its money left in 2203."""
        payout_id = payout["payout_id"]
        log.error(
            "payout given up after payout_attempts_max failed attempts",
            payout_id=payout_id,
            attempts=int(payout["attempt_count"]) + 1,
            error=repr(exc),
        )
        try:
            if payout["instruction_transfer_id"] is None:
                found = await self.ledger.find_transfer(payout_id)
                if found is None:  # nothing moved in the ledger: just close it
                    async with self.uow.begin() as tx:
                        await self._close(tx, payout, "failed", ATTEMPTS_EXHAUSTED, None, None)
                    return
                async with self.uow.begin() as tx:
                    await store.mark_instructed(tx.conn, payout_id, str(found["id"]))
            await self.apply_outcome(payout_id, "FAILED", ATTEMPTS_EXHAUSTED)
        except (LedgerRefused, Problem) as ledger_exc:
            async with self.uow.begin() as tx:
                retry_at = self.now() + timedelta(seconds=self.settings.payout_poll_seconds)
                await store.queue.retry_later(tx.conn, payout_id, repr(ledger_exc), retry_at)

    async def _close(
        self,
        tx: Tx,
        payout: dict[str, Any],
        status: str,
        failure_code: str | None,
        transfer_id: str | None,
        bank_status: str | None,
    ) -> bool:
        """pending → final, once, with its `payout.finished` event in the same transaction."""
        payout_id = payout["payout_id"]
        changed = await store.finish(
            tx.conn,
            payout_id,
            status=status,
            failure_code=failure_code,
            outcome_transfer_id=transfer_id,
            bank_status=bank_status,
            now=self.now(),
        )
        if changed:
            tx.publish(
                topic=PAYOUTS_TOPIC,
                type=PAYOUT_FINISHED,
                subject=payout_id,
                data={
                    "payout_id": payout_id,
                    "holder_id": payout["holder_id"],
                    "status": status,
                    "amount_minor": int(payout["amount_minor"]),
                    "currency": payout["currency"],
                    "failure_code": failure_code,
                    "ledger_transfer_id": transfer_id,
                    "livemode": bool(payout["livemode"]),
                },
            )
        return changed

    async def apply_outcome(self, payout_id: str, bank_status: str, failure_code: str | None) -> bool:
        """Post the bank's final answer (§3.6) and close the payout; a repeat changes nothing."""
        payout = await self.read(payout_id)
        if (
            payout.get("status") == "failed"
            and payout.get("failure_code") == ATTEMPTS_EXHAUSTED
            and bank_status == "SUCCEEDED"
        ):
            log.error(
                "the bank paid a payout given up after payout_attempts_max: its amount went back to 2202 "
                "and must be recovered by a person",
                payout_id=payout_id,
            )
        if payout.get("status") != "pending" or payout.get("instruction_transfer_id") is None:
            return False
        holder, currency, amount = payout["holder_id"], payout["currency"], int(payout["amount_minor"])
        book = bool(payout["livemode"])
        payable = await self.ledger.account_id(holder, "merchant_payable", currency, livemode=book)
        if bank_status == "SUCCEEDED":
            escrow = await self.ledger.account_id("platform", "escrow_bank", currency, livemode=book)
            transfer = await self.ledger.post_transfer(
                idempotency_key=f"{payout_id}:paid",
                reference=payout_id,
                metadata={"kind": "payout_paid"},
                postings=[
                    {"account_id": payable, "direction": "debit", "amount_minor": amount, "currency": currency},
                    {"account_id": escrow, "direction": "credit", "amount_minor": amount, "currency": currency},
                ],
            )
        else:
            settled = await self.ledger.account_id(holder, "merchant_settled", currency, livemode=book)
            transfer = await self.ledger.post_transfer(
                idempotency_key=f"{payout_id}:failed",
                reference=payout_id,
                metadata={"kind": "payout_failed"},
                corrects_transfer_id=payout["instruction_transfer_id"],
                postings=[
                    {"account_id": payable, "direction": "debit", "amount_minor": amount, "currency": currency},
                    {"account_id": settled, "direction": "credit", "amount_minor": amount, "currency": currency},
                ],
            )
        status = "succeeded" if bank_status == "SUCCEEDED" else "failed"
        async with self.uow.begin() as tx:
            return await self._close(tx, payout, status, failure_code, str(transfer["id"]), bank_status)

    async def round(self) -> int:
        """One worker round over due pending payouts; returns how many were looked at."""
        now = self.now()
        async with self.uow.begin() as tx:
            due = await store.queue.claim_due(
                tx.conn,
                now=now,
                limit=self.settings.payout_batch_max,
                lease_until=now + timedelta(seconds=self.settings.payout_poll_seconds),
            )
        for payout in due:
            await self.step(payout["payout_id"])
        return len(due)


__all__ = ["LEDGER_UNAVAILABLE", "PayoutDraft", "Payouts"]
