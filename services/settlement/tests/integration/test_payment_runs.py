"""A run of payment events (what the inbox hands `on_payment_event` per fetch) has the effects of the same events
applied one at a time: the run's new records and their entries are written in one statement each, every other
event follows alone (docs/performance.md, "Seventh pass")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from libs.common.events import Envelope
from services.settlement.events.consumers import on_payment_event
from services.settlement.store.tables import payment_records, refund_records, settlement_entries
from services.settlement.tests.integration.conftest import Harness, payment_event, refund_event


def _events(prefix: str) -> tuple[list[Envelope], list[Envelope]]:
    """(what arrives before the run, the run) for payments whose ids start with `prefix`."""

    def pay(name: str, kind: str = "payment.succeeded", amount_minor: int = 10_000) -> Envelope:
        return payment_event(f"pay_{prefix}{name}", kind=kind, amount_minor=amount_minor)

    before = [pay("known", "payment.failed"), refund_event(f"re_{prefix}1", f"pay_{prefix}refunded", 3_000)]
    run = [
        pay("new", amount_minor=12_000),
        pay("twice", "payment.failed"),
        pay("known"),  # recorded failed before the run: the late success is real money
        pay("dup"),
        pay("twice"),  # its failure earlier in this run
        pay("lost", "payment.closed"),
        pay("refunded"),  # its refund arrived first
        pay("dup"),  # a repeat within the run changes nothing
    ]
    return before, run


async def _state(h: Harness, prefix: str) -> dict[str, Any]:
    """Records, entries and refunds of the payments of `prefix`, the prefix taken out and generated columns left out."""
    like = f"%{prefix}%"
    generated = {"entry_id", "created_at", "updated_at", "applied_at", "succeeded_at"}

    def plain(row: Any) -> dict[str, Any]:
        return {k: v.replace(prefix, "") if isinstance(v, str) else v for k, v in row.items() if k not in generated}

    async with h.runtime.uow.read() as conn:
        records = await conn.execute(
            select(payment_records).where(payment_records.c.payment_id.like(like)).order_by("payment_id")
        )
        entries = await conn.execute(
            select(settlement_entries).where(settlement_entries.c.source_key.like(like)).order_by("source_key")
        )
        refunds = await conn.execute(select(refund_records).where(refund_records.c.refund_id.like(like)))
        return {
            "records": [plain(row) for row in records.mappings()],
            "entries": [plain(row) for row in entries.mappings()],
            "refunds_applied": [row["applied_at"] is not None for row in refunds.mappings()],
        }


async def test_a_run_of_payment_events_has_the_effects_of_its_events_one_at_a_time(settlement_only: Harness) -> None:
    h = settlement_only
    before, run = _events("xq")
    for event in before:
        await h.deliver(event)
    async with h.runtime.uow.begin() as tx:
        await on_payment_event.batch(tx, run)

    before, run = _events("zj")
    for event in [*before, *run]:
        await h.deliver(event)

    in_one_run, one_at_a_time = await _state(h, "xq"), await _state(h, "zj")
    assert in_one_run == one_at_a_time
    statuses = {row["payment_id"]: row["status"] for row in in_one_run["records"]}
    assert statuses == {
        "pay_new": "succeeded",
        "pay_twice": "succeeded",
        "pay_known": "succeeded",
        "pay_dup": "succeeded",
        "pay_lost": "closed",
        "pay_refunded": "succeeded",
    }
    nets = {row["source_key"]: row["amount_minor"] for row in in_one_run["entries"] if row["kind"] == "payment"}
    assert nets == {f"pay_{name}:net": 10_000 for name in ("twice", "known", "dup", "refunded")} | {
        "pay_new:net": 12_000
    }
    assert [row["amount_minor"] for row in in_one_run["entries"] if row["kind"] == "refund"] == [-3_000]
    assert in_one_run["refunds_applied"] == [True]
