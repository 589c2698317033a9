"""The ledger's consumers of other services' events: the cashier's payments and refunds (docs/ledger.md §3).

Exactly once without a table of our own: the inbox row (written by `InboxConsumer` in the handler's
transaction) skips a redelivered event, and for the window between the writer's commit and the inbox
commit (a crash there means redelivery) the transfer's `(source, idempotency_key)` — `pay_…:succeeded`,
`re_…:succeeded` — makes the second submission a replay of the first transfer, never a second one.

Transfers go through the process's batching writer like every other write; the accounts they need are
opened first, in their own committed transaction (the writer reads accounts on its own connections,
so an account opened inside the inbox transaction would not exist for it yet).

Test and live never mix (docs/ledger.md §2.1): a test payment or refund (`livemode: false`) is posted in the
test book, on the test twins of the same chart accounts; an event without the field is live. Wallets are live
money and have no test twin: a top-up of the platform's collecting merchant credits the holder's wallet (§3.7)
whatever its mode, as wallet payments move wallet money in the live book (docs/test-mode.md "Not separated yet").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from libs.common.db import Tx, UnitOfWork
from libs.common.events import Envelope
from libs.common.inbox import Subscription, batched
from libs.common.logging import get_logger, trace_id_var
from services.ledger.domain import errors
from services.ledger.domain.engine import CreateTransfers, Outcome
from services.ledger.domain.errors import LedgerError
from services.ledger.domain.transfers import DIRECTIONS, Posting, TransferRequest
from services.ledger.events.accounts import AccountCreateRequest
from services.ledger.events.postings import (
    AccountSpec,
    PostingPlan,
    is_wallet,
    payment_succeeded_plan,
    refund_succeeded_plan,
)
from services.ledger.flows.accounts import open_account
from services.ledger.store.writer import LedgerWriter

log = get_logger("juhe.ledger.consumers")

CASHIER_PAYMENTS_TOPIC = "cashier.payments"
CASHIER_REFUNDS_TOPIC = "cashier.refunds"
PAYMENT_SUCCEEDED = "payment.succeeded"
REFUND_SUCCEEDED = "refund.succeeded"
REFUND_FAILED = "refund.failed"
ACCOUNT_CACHE_MAX = 10_000
TOP_UP_PURPOSE = "wallet_topup"


class WalletTopUps(Protocol):
    """What the wallet (services/ledger/wallet/events/cashier.py) does with the cashier's events of wallet top-ups;
    the core only calls it, so it never imports the wallet (the app and the worker compose both)."""

    async def credit(self, data: dict[str, Any]) -> bool:
        """A paid `wallet_topup` payment of the collecting merchant: True when the holder's wallet is credited
        (§3.7, now or before), False when there is no wallet to credit (the payment is then posted §3.1)."""
        ...

    async def finish_refund(self, refund_id: str, *, succeeded: bool) -> bool:
        """A refund's end: True when it was a top-up's refund, whose hold on the balance is posted or voided."""
        ...


class CashierPostings:
    """Posts `payment.succeeded` (§3.1) and `refund.succeeded` (§3.3) of channel payments.

    Wallet payments and their refunds are skipped: the cashier moved that money itself with the §3.2
    two-phase transfer and the wallet refund transfer, through the ledger API.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        writer: LedgerWriter,
        *,
        topup_merchant_id: str | None = None,
        top_ups: WalletTopUps | None = None,
    ) -> None:
        self.uow = uow
        self.writer = writer
        self.topup_merchant_id = topup_merchant_id
        self.top_ups = top_ups
        self._account_ids: dict[tuple[str, bool], str] = {}  # (chart key, book) → account id

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(CASHIER_PAYMENTS_TOPIC, batched(self.on_payments_succeeded), frozenset({PAYMENT_SUCCEEDED})),
            Subscription(CASHIER_REFUNDS_TOPIC, self.on_refund_succeeded, frozenset({REFUND_SUCCEEDED})),
            Subscription(CASHIER_REFUNDS_TOPIC, self.on_refund_failed, frozenset({REFUND_FAILED})),
        ]

    async def on_payments_succeeded(self, tx: Tx, events: Sequence[Envelope]) -> None:
        """A run of `payment.succeeded` events (the inbox's batch, libs/common/inbox.py): their transfers are
        submitted together, so the writer posts them in one batch — one transaction for the run instead of one per
        payment (docs/performance.md, fifth pass). A top-up credited to a wallet is done in its place in the order
        (the plans before it are posted first)."""
        plans: list[tuple[PostingPlan, str | None]] = []
        for event in events:
            data = event.data
            if is_wallet(data):
                continue
            if data.get("purpose") == TOP_UP_PURPOSE:
                if data.get("merchant_id") == self.topup_merchant_id and self.topup_merchant_id:
                    if self.top_ups is not None:
                        await self.post_all(plans)
                        plans = []
                        if await self.top_ups.credit(data):
                            continue
                else:
                    # Only the platform's collecting merchant collects for wallets; anything else is that merchant's
                    # own money: a normal payment, never credited to a wallet.
                    log.warning(
                        "wallet_topup payment of another merchant posted as a payment (§3.1)",
                        payment_id=data.get("payment_id"),
                        merchant_id=data.get("merchant_id"),
                    )
            plans.append((payment_succeeded_plan(data), event.trace_id))
        await self.post_all(plans)

    async def on_refund_succeeded(self, tx: Tx, event: Envelope) -> None:
        if is_wallet(event.data):
            return
        # A top-up's refund posts the hold the cashier placed on the holder's balance, not §3.3.
        refund_id = str(event.data["refund_id"])
        if self.top_ups is not None and await self.top_ups.finish_refund(refund_id, succeeded=True):
            return
        await self.post(refund_succeeded_plan(event.data))

    async def on_refund_failed(self, tx: Tx, event: Envelope) -> None:
        """A top-up's refund the channel refused: its hold is voided, the holder's balance is whole again."""
        if self.top_ups is not None:
            await self.top_ups.finish_refund(str(event.data["refund_id"]), succeeded=False)

    async def post(self, plan: PostingPlan) -> str | None:
        """Submits the plan's transfer; the transfer id (new or replayed). None for a plan with no line (a 1-fen
        refund that is all a channel coupon's unsettled share moves no money, §3.15)."""
        if not plan.lines:
            return None
        [outcome] = await self.writer.submit(CreateTransfers((await self._request(plan),)))
        return _transfer_id(plan, outcome)

    async def post_all(self, plans: Sequence[tuple[PostingPlan, str | None]]) -> None:
        """`post` of several plans (each with the trace id of its event) at once: each its own command, submitted
        together so the writer takes them into one batch (one transaction; each transfer still succeeds or fails
        alone, and its idempotency key makes a repeat a replay). Every submission is awaited before the first
        error is raised, so none is left running when the inbox rolls back and applies the events one by one."""
        plans = [(plan, trace_id) for plan, trace_id in plans if plan.lines]
        if len(plans) <= 1:
            for plan, trace_id in plans:
                token = trace_id_var.set(trace_id)
                try:
                    await self.post(plan)
                finally:
                    trace_id_var.reset(token)
            return
        requests = [(plan, await self._request(plan), trace_id) for plan, trace_id in plans]
        answers = await asyncio.gather(
            *(self._submit_traced(request, trace_id) for _, request, trace_id in requests), return_exceptions=True
        )
        for (plan, _, _), answer in zip(requests, answers, strict=True):
            if isinstance(answer, BaseException):
                raise answer
            _transfer_id(plan, answer)

    async def _submit_traced(self, request: TransferRequest, trace_id: str | None) -> Outcome:
        """Submits one transfer under its event's trace id (the task's own context: it does not leak)."""
        trace_id_var.set(trace_id)
        [outcome] = await self.writer.submit(CreateTransfers((request,)))
        return outcome

    async def _request(self, plan: PostingPlan) -> TransferRequest:
        """The plan as a transfer request, its chart lines on their accounts (opened on first use)."""
        postings = []
        for line in plan.lines:
            account_id = await self.account_id(line.account, livemode=plan.livemode)
            postings.append(Posting(account_id, DIRECTIONS[line.direction], line.amount_minor, plan.currency))
        return TransferRequest(
            source=plan.source,
            idempotency_key=plan.idempotency_key,
            postings=tuple(postings),
            reference=plan.reference,
            metadata=plan.metadata,
        )

    async def account_id(self, spec: AccountSpec, *, livemode: bool = True) -> str:
        """The account of a chart line in one book, opened on first use (idempotent: same key and book, same body)."""
        key = spec.idempotency_key
        cached = self._account_ids.get((key, livemode))
        if cached is not None:
            return cached
        body = AccountCreateRequest.model_validate({**spec.open_body(), "livemode": livemode})
        async with self.uow.begin() as tx:
            opened, _ = await open_account(tx, body, key)
            if opened is None:
                raise LedgerError(errors.VALIDATION_FAILED, f"account key {key} is taken by another account body")
        if len(self._account_ids) >= ACCOUNT_CACHE_MAX:
            self._account_ids.clear()
        self._account_ids[(key, livemode)] = opened.id
        return opened.id


def _transfer_id(plan: PostingPlan, outcome: Outcome) -> str | None:
    """The transfer id of a plan's outcome (new or replayed); None when its key was used by another body; raises
    the outcome's other errors."""
    if outcome.error is not None:
        if outcome.error.code == errors.IDEMPOTENCY_KEY_REUSED.code:
            # Posted before from another body (e.g. a corrected fee): the business event is already in the ledger;
            # posting it again would count it twice. An operator corrects by §3.10.
            log.error(
                "business event already posted with other postings; not posted again",
                idempotency_key=plan.idempotency_key,
            )
            return None
        raise outcome.error
    assert outcome.transfer is not None
    return outcome.transfer.id
