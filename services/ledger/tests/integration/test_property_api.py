"""Property test over HTTP and real PostgreSQL: random create / batch / linked / post / void / freeze
sequences give the same outcomes and balances as the naive in-memory model, and `verify` stays clean."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ledger.domain.reference import RefAccount, ReferenceLedger
from services.ledger.domain.transfers import Direction, Posting, TransferRequest

from .conftest import Ledger

SPECS: dict[str, dict[str, Any]] = {
    "src": {"kind": "channel_clearing", "code": "1101"},
    "w1": {"flags": {"debits_must_not_exceed_credits": True}},
    "w2": {"flags": {"debits_must_not_exceed_credits": True}, "credit_limit_minor": 40},
    "m": {"kind": "merchant_pending", "code": "2201"},
    "u1": {"currency": "USD", "flags": {"debits_must_not_exceed_credits": True}},
}
NAMES = sorted(SPECS)
transfer_st = st.tuples(
    st.sampled_from(NAMES),
    st.sampled_from(NAMES),
    st.integers(1, 120),
    st.booleans(),
    st.integers(0, 8),
    st.sampled_from(["CNY", "CNY", "USD"]),
)
op_st = st.one_of(
    st.tuples(st.just("create"), transfer_st),
    st.tuples(st.just("batch"), st.lists(transfer_st, min_size=1, max_size=4)),
    st.tuples(st.just("linked"), st.lists(transfer_st, min_size=1, max_size=3)),
    st.tuples(st.just("post"), st.integers(0, 20), st.one_of(st.none(), st.integers(1, 120))),
    st.tuples(st.just("void"), st.integers(0, 20)),
    st.tuples(st.just("freeze"), st.sampled_from(NAMES), st.booleans()),
)
_examples = itertools.count()


def _request(t: tuple[str, str, int, bool, int, str], ns: str) -> TransferRequest:
    debit, credit, amount, pending, key, currency = t
    return TransferRequest(
        source="prop",
        idempotency_key=f"{ns}-{key}",
        postings=(
            Posting(debit, Direction.DEBIT, amount, currency),
            Posting(credit, Direction.CREDIT, amount, currency),
        ),
        pending=pending,
    )


def _json(r: TransferRequest, ids: dict[str, str]) -> dict[str, Any]:
    return {
        "source": r.source,
        "idempotency_key": r.idempotency_key,
        "pending": r.pending,
        "postings": [
            {
                "account_id": ids[p.account_id],
                "direction": str(p.direction),
                "amount_minor": p.amount_minor,
                "currency": p.currency,
            }
            for p in r.postings
        ],
    }


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(op_st, min_size=1, max_size=12))
async def test_api_matches_reference_model(ledger: Ledger, ops: list[Any]) -> None:
    ns = f"ex{next(_examples)}"
    ids: dict[str, str] = {}
    ref = ReferenceLedger()
    for name in NAMES:
        spec = dict(SPECS[name])
        ids[name] = await ledger.open(**spec)
        flags = spec.get("flags", {})
        ref.open(
            name,
            RefAccount(
                currency=spec.get("currency", "CNY"),
                no_overdraft=flags.get("debits_must_not_exceed_credits", False),
                credit_limit_minor=spec.get("credit_limit_minor", 0),
            ),
        )
    created: list[tuple[str, str]] = []  # (api id, model id)

    def remember(api_id: str | None, model: tuple[str | None, str | None]) -> None:
        if api_id and model[1] and model[1] not in {m for _, m in created}:
            created.append((api_id, model[1]))

    for op in ops:
        kind = op[0]
        if kind == "create":
            r = _request(op[1], ns)
            want = ref.create(r)
            resp = await ledger.client.post("/v1/transfers", json=_json(r, ids))
            got = None if resp.status_code in (200, 201) else resp.json()["code"]
            assert got == want[0], (op, resp.text)
            remember(resp.json().get("id") if got is None else None, want)
        elif kind in ("batch", "linked"):
            reqs = [_request(t, ns) for t in op[1]]
            wants = ref.create_linked(reqs) if kind == "linked" else [ref.create(r) for r in reqs]
            resp = await ledger.client.post(
                "/v1/transfers/batch", json={"linked": kind == "linked", "transfers": [_json(r, ids) for r in reqs]}
            )
            results = resp.json()["results"]
            for item, want in zip(results, wants, strict=True):
                got = item["error"]["code"] if item["outcome"] == "failed" else None
                assert got == want[0], (op, results)
                remember(item.get("transfer_id"), want)
        elif kind == "freeze":
            _, name, frozen = op
            resp = await ledger.client.post(f"/v1/accounts/{ids[name]}/{'freeze' if frozen else 'unfreeze'}")
            assert resp.status_code == 200
            ref.accounts[name].status = "frozen" if frozen else "active"
        elif created:
            api_id, model_id = created[op[1] % len(created)]
            if kind == "post":
                want_code = ref.finish(model_id, op[2], void=False)
                payload = {"amount_minor": op[2]} if op[2] is not None else {}
                resp = await ledger.client.post(f"/v1/transfers/{api_id}/post", json=payload)
            else:
                want_code = ref.finish(model_id, None, void=True)
                resp = await ledger.client.post(f"/v1/transfers/{api_id}/void")
            got = None if resp.status_code == 200 else resp.json()["code"]
            assert got == want_code, (op, resp.text)

    for name in NAMES:
        b = await ledger.balances(ids[name])
        got = (b["debits_posted"], b["credits_posted"], b["debits_pending"], b["credits_pending"])
        assert got == ref.balances(name), name
    await ledger.assert_verified()
