"""Property test of the pipelined writer: commands submitted all at once, cut into small batches that are
computed on top of each other before committing, give exactly the outcomes of the naive model applied
one by one in submission order, and leave the database verified."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.common.db import UnitOfWork, create_engine
from services.ledger.domain.engine import CreateTransfers, PostPending, VoidPending
from services.ledger.domain.reference import RefAccount, ReferenceLedger
from services.ledger.domain.transfers import Direction, Posting, TransferRequest
from services.ledger.store.writer import LedgerWriter

from .conftest import Ledger

NAMES = ["src", "w1", "w2", "m"]
transfer_st = st.tuples(
    st.sampled_from(NAMES), st.sampled_from(NAMES), st.integers(1, 60), st.booleans(), st.integers(0, 6)
)
group_st = st.lists(
    st.one_of(
        st.tuples(st.just("create"), transfer_st),
        st.tuples(st.just("linked"), st.lists(transfer_st, min_size=1, max_size=3)),
        st.tuples(st.just("post"), st.integers(0, 30), st.one_of(st.none(), st.integers(1, 60))),
        st.tuples(st.just("void"), st.integers(0, 30)),
    ),
    min_size=1,
    max_size=12,
)
_examples = itertools.count()


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(groups=st.lists(group_st, min_size=1, max_size=3), batch_max=st.integers(1, 6))
async def test_pipelined_writer_matches_model(ledger: Ledger, groups: list[Any], batch_max: int) -> None:
    ns = f"pp{next(_examples)}"
    ids = {
        "src": await ledger.open("channel_clearing", "1101"),
        "w1": await ledger.wallet(),
        "w2": await ledger.open(flags={"debits_must_not_exceed_credits": True}, credit_limit_minor=30),
        "m": await ledger.open("merchant_pending", "2201"),
    }
    ref = ReferenceLedger()
    ref.open("src", RefAccount("CNY"))
    ref.open("w1", RefAccount("CNY", no_overdraft=True))
    ref.open("w2", RefAccount("CNY", no_overdraft=True, credit_limit_minor=30))
    ref.open("m", RefAccount("CNY"))

    def request(t: tuple[str, str, int, bool, int]) -> TransferRequest:
        debit, credit, amount, pending, key = t
        return TransferRequest(
            "prop",
            f"{ns}-{key}",
            (
                Posting(ids[debit], Direction.DEBIT, amount, "CNY"),
                Posting(ids[credit], Direction.CREDIT, amount, "CNY"),
            ),
            pending=pending,
        )

    def model_request(t: tuple[str, str, int, bool, int]) -> TransferRequest:
        debit, credit, amount, pending, key = t
        return TransferRequest(
            "prop",
            f"{ns}-{key}",
            (Posting(debit, Direction.DEBIT, amount, "CNY"), Posting(credit, Direction.CREDIT, amount, "CNY")),
            pending=pending,
        )

    engine = create_engine(ledger.database_url)
    writer = LedgerWriter(UnitOfWork(engine, source="ledger"), batch_transfers_max=batch_max)
    created: list[tuple[str, str]] = []  # (ledger id, model id), from earlier groups
    pipelined = False
    try:
        for group in groups:
            commands: list[Any] = []
            expected: list[list[tuple[str | None, str | None]]] = []
            for op in group:  # the model runs in submission order, one by one
                if op[0] == "create":
                    commands.append(CreateTransfers((request(op[1]),)))
                    expected.append([ref.create(model_request(op[1]))])
                elif op[0] == "linked":
                    commands.append(CreateTransfers(tuple(request(t) for t in op[1]), linked=True))
                    expected.append(ref.create_linked([model_request(t) for t in op[1]]))
                elif created:
                    ledger_id, model_id = created[op[1] % len(created)]
                    if op[0] == "post":
                        commands.append(PostPending(ledger_id, amount_minor=op[2]))
                        expected.append([(ref.finish(model_id, op[2], void=False), None)])
                    else:
                        commands.append(VoidPending(ledger_id))
                        expected.append([(ref.finish(model_id, None, void=True), None)])
            results = await asyncio.gather(*(writer.submit(c) for c in commands))  # queued in this order
            for outcomes, wanted in zip(results, expected, strict=True):
                for outcome, (code, model_id) in zip(outcomes, wanted, strict=True):
                    assert (outcome.error.code if outcome.error else None) == code
                    known = {m for _, m in created}
                    if model_id and outcome.transfer and not outcome.replayed and model_id not in known:
                        created.append((outcome.transfer.id, model_id))
            if batch_max == 1 and len(commands) >= 2 and all(isinstance(c, CreateTransfers) for c in commands):
                pipelined = True  # one command per batch, all creates: each computed on the previous one
        if pipelined:
            assert writer.optimistic_commits + writer.optimistic_fallbacks > 0
    finally:
        await writer.stop()
        await engine.dispose()
    for name in NAMES:
        b = await ledger.balances(ids[name])
        assert (b["debits_posted"], b["credits_posted"], b["debits_pending"], b["credits_pending"]) == ref.balances(
            name
        )
    await ledger.assert_verified()
