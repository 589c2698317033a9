"""Unit tests of the ledger domain: validation, balance arithmetic, limits, two-phase, linked batches."""

from __future__ import annotations

import pytest

from services.ledger.domain import errors
from services.ledger.domain.accounts import (
    MAX_AMOUNT_MINOR,
    Account,
    AccountFlags,
    AccountStatus,
    Balances,
    NormalBalance,
    available_balance,
    posted_balance,
)
from services.ledger.domain.engine import EntryKind, PostPending, VoidPending
from services.ledger.domain.errors import LedgerError
from services.ledger.domain.transfers import Direction, Posting, TransferRequest, TransferStatus

from .harness import Harness, create, request


def _codes(outcomes: list) -> list[str | None]:
    return [o.error.code if o.error else None for o in outcomes]


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.open("world", normal_balance=NormalBalance.DEBIT)  # unconstrained source of funds (e.g. channel clearing)
    h.open("wallet", no_overdraft=True)
    h.open("merchant")
    h.open("usd", currency="USD", no_overdraft=True)
    return h


# --- validation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("postings", "code"),
    [
        ([Posting("a", Direction.DEBIT, 1, "CNY")], "too_few_postings"),
        (
            [Posting("a", Direction.DEBIT, 0, "CNY"), Posting("b", Direction.CREDIT, 0, "CNY")],
            "amount_must_be_positive",
        ),
        (
            [Posting("a", Direction.DEBIT, -5, "CNY"), Posting("b", Direction.CREDIT, -5, "CNY")],
            "amount_must_be_positive",
        ),
        (
            [Posting("a", Direction.DEBIT, 2**63, "CNY"), Posting("b", Direction.CREDIT, 2**63, "CNY")],
            "amount_exceeds_maximum",
        ),
        ([Posting("a", Direction.DEBIT, 5, "CNY"), Posting("b", Direction.CREDIT, 4, "CNY")], "transfer_unbalanced"),
        ([Posting("a", Direction.DEBIT, 5, "CNY"), Posting("b", Direction.CREDIT, 5, "USD")], "transfer_unbalanced"),
        ([Posting("a", Direction.DEBIT, 5, "cny"), Posting("b", Direction.CREDIT, 5, "cny")], "invalid_currency"),
        ([Posting("a", Direction.DEBIT, 5, "CNY"), Posting("b", Direction.CREDIT, 5, "CNY")] * 33, "too_many_postings"),
    ],
)
def test_posting_shape_rules(postings: list[Posting], code: str) -> None:
    with pytest.raises(LedgerError) as info:
        TransferRequest("s", "k", tuple(postings)).validate()
    assert info.value.code == code


def test_multi_currency_transfer_balanced_per_currency_is_valid() -> None:
    TransferRequest(
        "s",
        "k",
        (
            Posting("a", Direction.DEBIT, 100, "CNY"),
            Posting("b", Direction.CREDIT, 100, "CNY"),
            Posting("c", Direction.DEBIT, 14, "USD"),
            Posting("d", Direction.CREDIT, 14, "USD"),
        ),
    ).validate()


@pytest.mark.parametrize(
    ("source", "key", "reference"),
    [("s\x1f", "k", None), ("s", "k\n", None), ("s", "k", "pay\x1e"), ("s", "k", "")],
)
def test_identifiers_without_control_characters(source: str, key: str, reference: str | None) -> None:
    r = request("a", "b", 1)
    bad = TransferRequest(source, key, r.postings, reference=reference)
    with pytest.raises(LedgerError) as info:
        bad.validate()
    assert info.value.code == "validation_failed"
    TransferRequest("cashier", "pay_1:支付成功", r.postings, reference="订单 42").validate()


def test_timeout_only_for_pending() -> None:
    with pytest.raises(LedgerError) as info:
        request("a", "b", 1, timeout_seconds=5).validate()
    assert info.value.code == "invalid_timeout"


def test_maximum_amount_is_accepted() -> None:
    request("a", "b", MAX_AMOUNT_MINOR).validate()


def test_every_catalogue_code_is_unique_and_snake_case() -> None:
    codes = [spec.code for spec in errors.CATALOGUE]
    assert len(codes) == len(set(codes)) > 20
    assert all(c == c.lower() and " " not in c for c in codes)


# --- balances ------------------------------------------------------------------------------------------
def test_available_balance_counts_outgoing_pending_only() -> None:
    b = Balances(debits_posted=30, credits_posted=100, debits_pending=20, credits_pending=50)
    assert posted_balance(NormalBalance.CREDIT, b) == 70
    assert available_balance(NormalBalance.CREDIT, b) == 50
    assert posted_balance(NormalBalance.DEBIT, b) == -70
    assert available_balance(NormalBalance.DEBIT, b) == -120


def test_conflicting_flags_refused() -> None:
    with pytest.raises(LedgerError):
        AccountFlags(True, True)


def test_credit_limit_needs_a_flag() -> None:
    with pytest.raises(LedgerError):
        Account("a", "h", "CNY", "wallet", "2301", credit_limit_minor=10)


def test_close_requires_empty_account() -> None:
    a = Account("a", "h", "CNY", "wallet", "2301", balances=Balances(credits_posted=1))
    with pytest.raises(LedgerError) as info:
        a.close()
    assert info.value.code == "account_not_empty"
    a.balances.debits_posted = 1
    assert a.close() is True
    assert a.close() is False
    with pytest.raises(LedgerError) as info:
        a.freeze()
    assert info.value.code == "account_closed"


# --- engine: single transfers ----------------------------------------------------------------------------
def test_posted_transfer_moves_counters_and_writes_entries(h: Harness) -> None:
    out = h.run_one(create(request("world", "wallet", 100)))
    assert out.ok and out.transfer is not None and out.transfer.status is TransferStatus.POSTED
    assert h.accounts["wallet"].balances.as_tuple() == (0, 100, 0, 0)
    assert h.accounts["world"].balances.as_tuple() == (100, 0, 0, 0)
    assert [(e.account_id, e.kind, e.balances_after) for e in h.entries] == [
        ("world", EntryKind.POSTED, (100, 0, 0, 0)),
        ("wallet", EntryKind.POSTED, (0, 100, 0, 0)),
    ]
    assert [e.type for e in h.events] == ["transfer.posted"]


def test_overdraft_rejected_individually_in_a_batch(h: Harness) -> None:
    h.run_one(create(request("world", "wallet", 100)))
    spends = [request("wallet", "merchant", 30) for _ in range(5)]
    outcomes = h.run([create(*spends)])[0]
    assert _codes(outcomes) == [None, None, None, "insufficient_funds", "insufficient_funds"]
    assert h.accounts["wallet"].balances.as_tuple() == (90, 100, 0, 0)
    assert outcomes[3].error is not None and outcomes[3].error.extensions["account_id"] == "wallet"


def test_credit_limit_allows_going_below_zero_up_to_limit() -> None:
    h = Harness()
    h.open("bnpl", no_overdraft=True, credit_limit_minor=50)
    h.open("shop")
    assert _codes(h.run([create(request("bnpl", "shop", 50), request("bnpl", "shop", 1))])[0]) == [
        None,
        "insufficient_funds",
    ]


def test_credits_must_not_exceed_debits() -> None:
    h = Harness()
    h.open("receivable", normal_balance=NormalBalance.DEBIT, no_overcredit=True)
    h.open("other")
    assert h.run_one(create(request("other", "receivable", 1))).error.code == "credits_exceed_debits"  # type: ignore[union-attr]
    h.run_one(create(request("receivable", "other", 10)))
    assert h.run_one(create(request("other", "receivable", 10))).ok


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: request("nope", "wallet", 1), "account_not_found"),
        (lambda: request("world", "usd", 1), "currency_mismatch"),
    ],
)
def test_reference_errors(h: Harness, make, code: str) -> None:  # type: ignore[no-untyped-def]
    assert h.run_one(create(make())).error.code == code  # type: ignore[union-attr]
    assert h.entries == [] and h.transfers == {}


def test_frozen_refuses_debits_takes_credits_closed_refuses_all(h: Harness) -> None:
    h.run_one(create(request("world", "wallet", 100)))
    h.accounts["wallet"].freeze()
    assert h.run_one(create(request("wallet", "merchant", 1))).error.code == "account_frozen"  # type: ignore[union-attr]
    assert h.run_one(create(request("world", "wallet", 1))).ok
    h.accounts["merchant"].status = AccountStatus.CLOSED
    assert h.run_one(create(request("world", "merchant", 1))).error.code == "account_closed"  # type: ignore[union-attr]


def test_overflow_of_a_counter_is_refused(h: Harness) -> None:
    assert h.run_one(create(request("world", "merchant", MAX_AMOUNT_MINOR))).ok
    assert h.run_one(create(request("world", "merchant", 1))).error.code == "balance_overflow"  # type: ignore[union-attr]


def test_correction_must_reference_an_existing_transfer(h: Harness) -> None:
    original = h.run_one(create(request("world", "merchant", 5))).transfer
    assert original is not None
    bad = TransferRequest("s", "c1", request("merchant", "world", 5).postings, corrects_transfer_id="tr_missing")
    assert h.run_one(create(bad)).error.code == "corrected_transfer_not_found"  # type: ignore[union-attr]
    good = TransferRequest("s", "c2", request("merchant", "world", 5).postings, corrects_transfer_id=original.id)
    assert h.run_one(create(good)).ok


# --- idempotency -----------------------------------------------------------------------------------------
def test_same_key_same_body_replays_other_body_conflicts(h: Harness) -> None:
    first = h.run_one(create(request("world", "merchant", 5, key="pay_1")))
    again = h.run_one(create(request("world", "merchant", 5, key="pay_1")))
    other = h.run_one(create(request("world", "merchant", 6, key="pay_1")))
    assert again.replayed and again.transfer is first.transfer
    assert other.error is not None and other.error.code == "idempotency_key_reused"
    assert h.accounts["merchant"].balances.credits_posted == 5


def test_same_key_within_one_batch_posts_once(h: Harness) -> None:
    outcomes = h.run([create(*[request("world", "merchant", 5, key="dup") for _ in range(20)])])[0]
    assert sum(1 for o in outcomes if o.ok and not o.replayed) == 1
    assert all(o.ok for o in outcomes)
    assert h.accounts["merchant"].balances.credits_posted == 5


def test_same_key_other_source_is_another_transfer(h: Harness) -> None:
    h.run_one(create(request("world", "merchant", 5, key="x", source="cashier")))
    assert not h.run_one(create(request("world", "merchant", 5, key="x", source="marketing"))).replayed
    assert h.accounts["merchant"].balances.credits_posted == 10


# --- linked ----------------------------------------------------------------------------------------------
def test_linked_batch_all_or_nothing(h: Harness) -> None:
    h.run_one(create(request("world", "wallet", 50)))
    outcomes = h.run([create(request("wallet", "merchant", 30), request("wallet", "merchant", 30), linked=True)])[0]
    assert _codes(outcomes) == ["linked_event_failed", "insufficient_funds"]
    assert h.accounts["wallet"].balances.as_tuple() == (0, 50, 0, 0)
    assert len(h.entries) == 2 and len(h.events) == 1  # only the funding transfer


def test_linked_batch_success_then_key_reuse_of_member(h: Harness) -> None:
    h.run_one(create(request("world", "wallet", 50)))
    a, b = request("wallet", "merchant", 20, key="l1"), request("wallet", "merchant", 20, key="l2")
    assert _codes(h.run([create(a, b, linked=True)])[0]) == [None, None]
    assert h.accounts["wallet"].balances.debits_posted == 40
    # A failed linked batch must also forget keys it had claimed in memory.
    c, d = request("wallet", "merchant", 5, key="l3"), request("wallet", "merchant", 500, key="l4")
    h.run([create(c, d, linked=True)])
    assert not h.run_one(create(request("wallet", "merchant", 7, key="l3"))).error


# --- two-phase -------------------------------------------------------------------------------------------
def test_pending_reserves_then_partial_post_releases_rest(h: Harness) -> None:
    h.run_one(create(request("world", "wallet", 100)))
    hold = h.run_one(create(request("wallet", "merchant", 80, pending=True))).transfer
    assert hold is not None and hold.status is TransferStatus.PENDING
    assert h.accounts["wallet"].balances.as_tuple() == (0, 100, 80, 0)
    assert h.run_one(create(request("wallet", "merchant", 21))).error.code == "insufficient_funds"  # type: ignore[union-attr]
    posted = h.run_one(PostPending(hold.id, amount_minor=60))
    assert posted.ok and hold.status is TransferStatus.POSTED
    assert h.accounts["wallet"].balances.as_tuple() == (60, 100, 0, 0)
    assert h.accounts["merchant"].balances.as_tuple() == (0, 60, 0, 0)
    # Same post again is a replay; another amount is a conflict; void after post too.
    assert h.run_one(PostPending(hold.id, amount_minor=60)).replayed
    assert h.run_one(PostPending(hold.id)).error.code == "pending_transfer_already_posted"
    assert h.run_one(VoidPending(hold.id)).error.code == "pending_transfer_already_posted"


def test_post_more_than_reserved_refused(h: Harness) -> None:
    h.run_one(create(request("world", "wallet", 100)))
    hold = h.run_one(create(request("wallet", "merchant", 80, pending=True))).transfer
    assert hold is not None
    assert h.run_one(PostPending(hold.id, amount_minor=81)).error.code == "post_amount_invalid"  # type: ignore[union-attr]
    assert h.run_one(PostPending(hold.id, amounts_minor=(80, 79))).error.code == "post_amount_invalid"  # type: ignore[union-attr]
    assert h.run_one(PostPending(hold.id, amounts_minor=(70, 70))).ok


def test_void_releases_and_is_idempotent(h: Harness) -> None:
    h.run_one(create(request("world", "wallet", 100)))
    hold = h.run_one(create(request("wallet", "merchant", 100, pending=True))).transfer
    assert hold is not None
    assert h.run_one(VoidPending(hold.id)).ok
    assert h.accounts["wallet"].balances.as_tuple() == (0, 100, 0, 0)
    assert h.run_one(VoidPending(hold.id)).replayed
    assert h.run_one(PostPending(hold.id)).error.code == "pending_transfer_already_voided"  # type: ignore[union-attr]
    assert [e.type for e in h.events][-1] == "transfer.voided"


def test_timeout_expires_and_post_after_timeout_fails(h: Harness) -> None:
    h.run_one(create(request("world", "wallet", 100)))
    hold = h.run_one(create(request("wallet", "merchant", 100, pending=True, timeout_seconds=60))).transfer
    assert hold is not None
    h.tick(30)
    assert h.run_one(VoidPending(hold.id, expired=True)).replayed  # not yet: the expiry task never expires early
    assert hold.status is TransferStatus.PENDING
    h.tick(31)
    out = h.run_one(PostPending(hold.id))
    assert out.error is not None and out.error.code == "pending_transfer_expired"
    assert hold.status is TransferStatus.EXPIRED
    assert h.accounts["wallet"].balances.as_tuple() == (0, 100, 0, 0)
    assert h.events[-1].type == "transfer.expired"


def test_post_of_unknown_or_plain_transfer(h: Harness) -> None:
    plain = h.run_one(create(request("world", "merchant", 1))).transfer
    assert plain is not None
    assert h.run_one(PostPending("tr_nope")).error.code == "transfer_not_found"  # type: ignore[union-attr]
    assert h.run_one(PostPending(plain.id)).error.code == "transfer_not_pending"  # type: ignore[union-attr]


def test_frozen_account_pending_can_still_be_voided(h: Harness) -> None:
    h.run_one(create(request("world", "wallet", 100)))
    hold = h.run_one(create(request("wallet", "merchant", 100, pending=True))).transfer
    assert hold is not None
    h.accounts["wallet"].freeze()
    assert h.run_one(VoidPending(hold.id)).ok


def test_normal_balance_defaults_from_chart_code() -> None:
    assert NormalBalance.for_code("1101") is NormalBalance.DEBIT
    assert NormalBalance.for_code("5101") is NormalBalance.DEBIT
    assert NormalBalance.for_code("2201") is NormalBalance.CREDIT
    assert NormalBalance.for_code("4101") is NormalBalance.CREDIT
