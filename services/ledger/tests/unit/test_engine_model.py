"""Property test: the batch engine, fed random commands in random batch splits, matches the naive model.

Also checks the ledger invariants after every batch: Σ debits = Σ credits per currency (posted and
pending), no flagged account beyond its limit, and every account's counters equal the sum of its entries.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ledger.domain.accounts import Balances, limit_violation
from services.ledger.domain.engine import CreateTransfers, PostPending, VoidPending
from services.ledger.domain.reference import RefAccount, ReferenceLedger
from services.ledger.domain.transfers import Direction, Posting, TransferRequest

from .harness import Harness

ACCOUNTS: dict[str, dict[str, Any]] = {
    "src": {"currency": "CNY"},
    "w1": {"currency": "CNY", "no_overdraft": True},
    "w2": {"currency": "CNY", "no_overdraft": True, "credit_limit_minor": 40},
    "m": {"currency": "CNY"},
    "rcv": {"currency": "CNY", "no_overcredit": True},
    "u1": {"currency": "USD", "no_overdraft": True},
    "usrc": {"currency": "USD"},
}
NAMES = sorted(ACCOUNTS)

amounts = st.integers(min_value=1, max_value=120)
transfer_st = st.tuples(
    st.sampled_from([*NAMES, "ghost"]),
    st.sampled_from(NAMES),
    amounts,
    st.booleans(),  # pending
    st.integers(min_value=0, max_value=30),  # idempotency key index (collisions on purpose)
    st.sampled_from(["CNY", "CNY", "CNY", "USD"]),
)
op_st = st.one_of(
    st.tuples(st.just("create"), transfer_st),
    st.tuples(st.just("linked"), st.lists(transfer_st, min_size=1, max_size=4)),
    st.tuples(st.just("post"), st.integers(0, 40), st.one_of(st.none(), amounts)),
    st.tuples(st.just("void"), st.integers(0, 40)),
    st.tuples(st.just("freeze"), st.sampled_from(NAMES), st.booleans()),
)


def _request(t: tuple[str, str, int, bool, int, str]) -> TransferRequest:
    debit, credit, amount, pending, key, currency = t
    return TransferRequest(
        source="prop",
        idempotency_key=f"key-{key}",
        postings=(
            Posting(debit, Direction.DEBIT, amount, currency),
            Posting(credit, Direction.CREDIT, amount, currency),
        ),
        pending=pending,
    )


def _check_invariants(h: Harness) -> None:
    totals: dict[str, list[int]] = {}
    for account in h.accounts.values():
        b = account.balances
        t = totals.setdefault(account.currency, [0, 0, 0, 0])
        for i, v in enumerate(b.as_tuple()):
            t[i] += v
        assert limit_violation(account, b) is None, account
        assert min(b.as_tuple()) >= 0
    for t in totals.values():
        assert t[0] == t[1] and t[2] == t[3]
    recomputed: dict[str, Balances] = {a: Balances() for a in h.accounts}
    for e in h.entries:
        b = recomputed[e.account_id]
        if e.direction is Direction.DEBIT:
            b.debits_posted += e.posted_delta_minor
            b.debits_pending += e.pending_delta_minor
        else:
            b.credits_posted += e.posted_delta_minor
            b.credits_pending += e.pending_delta_minor
        assert b.as_tuple() == e.balances_after
    for account_id, account in h.accounts.items():
        assert recomputed[account_id].as_tuple() == account.balances.as_tuple()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_st, min_size=1, max_size=30), cuts=st.lists(st.integers(1, 6), min_size=1, max_size=30))
def test_engine_matches_reference_model(ops: list[Any], cuts: list[int]) -> None:
    h, ref = Harness(), ReferenceLedger()
    for name, spec in ACCOUNTS.items():
        h.open(name, **spec)
        ref.open(
            name,
            RefAccount(
                currency=spec["currency"],
                no_overdraft=spec.get("no_overdraft", False),
                no_overcredit=spec.get("no_overcredit", False),
                credit_limit_minor=spec.get("credit_limit_minor", 0),
            ),
        )
    created: list[tuple[str, str]] = []  # (engine id, reference id) of every created transfer
    commands: list[Any] = []
    expected: list[list[tuple[str | None, str | None]]] = []

    def flush() -> None:
        """Runs the collected commands as ONE engine batch and compares every outcome with the model."""
        if not commands:
            return
        results = h.run(commands)
        for outcomes, wanted in zip(results, expected, strict=True):
            for outcome, (code, ref_id) in zip(outcomes, wanted, strict=True):
                got = outcome.error.code if outcome.error else None
                assert got == code, (got, code)
                if ref_id is not None and outcome.transfer is not None and not outcome.replayed:
                    created.append((outcome.transfer.id, ref_id))
        commands.clear()
        expected.clear()
        _check_invariants(h)
        for name in NAMES:
            assert h.accounts[name].balances.as_tuple() == ref.balances(name), name

    cut_i, in_batch = 0, 0
    for op in ops:
        kind = op[0]
        if kind == "freeze":  # the store changes status in its own transaction, between batches
            flush()
            _, name, frozen = op
            h.accounts[name].status = h.accounts[name].status.__class__("frozen" if frozen else "active")
            ref.accounts[name].status = "frozen" if frozen else "active"
            continue
        if kind == "create":
            commands.append(CreateTransfers((_request(op[1]),)))
            expected.append([ref.create(_request(op[1]))])
        elif kind == "linked":
            reqs = [_request(t) for t in op[1]]
            commands.append(CreateTransfers(tuple(reqs), linked=True))
            expected.append(ref.create_linked(reqs))
        elif created:  # post/void target a transfer created in an earlier batch
            engine_id, ref_id = created[op[1] % len(created)]
            if kind == "post":
                commands.append(PostPending(engine_id, amount_minor=op[2]))
                expected.append([(ref.finish(ref_id, op[2], void=False), None)])
            else:
                commands.append(VoidPending(engine_id))
                expected.append([(ref.finish(ref_id, None, void=True), None)])
        in_batch += 1
        if in_batch >= cuts[cut_i % len(cuts)]:
            flush()
            cut_i, in_batch = cut_i + 1, 0
    flush()


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(transfer_st, min_size=1, max_size=40))
def test_one_big_batch_equals_one_by_one(ops: list[Any]) -> None:
    """Batching must not change results: one engine run over N creates = N single runs."""
    batched, single = Harness(), Harness()
    for h in (batched, single):
        for name, spec in ACCOUNTS.items():
            h.open(name, **spec)
        h.run(
            [
                CreateTransfers(
                    (
                        TransferRequest(
                            "seed",
                            "s",
                            (Posting("src", Direction.DEBIT, 100, "CNY"), Posting("w1", Direction.CREDIT, 100, "CNY")),
                        ),
                    )
                )
            ]
        )
    reqs = [_request(t) for t in ops]
    out_batched = batched.run([CreateTransfers((r,)) for r in reqs])
    out_single = [single.run([CreateTransfers((r,))])[0] for r in reqs]
    codes = [[o.error.code if o.error else None for o in x] for x in out_batched]
    assert codes == [[o.error.code if o.error else None for o in x] for x in out_single]
    for name in NAMES:
        assert batched.accounts[name].balances.as_tuple() == single.accounts[name].balances.as_tuple()
