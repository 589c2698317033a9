"""A consumed batch of attempt outcomes is one transaction (libs/common/inbox.py), applied as one run of the
batched handler (a few statements for all of it): the health it writes is what the same outcomes applied one by
one write, each attempt counts once within the batch and across a replay, and a circuit opened inside the batch
is published once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from libs.common.db import UnitOfWork, create_engine
from libs.common.events import Envelope
from libs.common.outbox_tables import outbox
from services.routing.events.consumers import on_payment_outcome, on_payment_outcomes
from services.routing.events.types import PAYMENT_ATTEMPT_FAILED, PAYMENT_FAILED, PAYMENT_SUCCEEDED
from services.routing.store.tables import route_daily_volume, route_health, route_health_buckets
from services.routing.tests.integration.conftest import seed


def outcome(event_type: str, route_id: str, attempt_id: str, **data: Any) -> Envelope:
    body = {"payment_id": f"pay_{attempt_id}", "route_id": route_id, "attempt_id": attempt_id, **data}
    return Envelope(type=event_type, source="cashier", subject=f"pay_{attempt_id}", data=body)


def batch() -> list[Envelope]:
    """Two routes interleaved, as a fetch of several partitions delivers them: wx_sp fails five times in a row
    (its circuit opens on the fifth, after which outcomes change nothing), wx_lianlian succeeds and declines, and
    one attempt of each route is reported twice (attempt_failed, then the payment's failed). Built when the test
    runs: an outcome counts in the success-rate window from its event's time."""
    return [
        outcome(PAYMENT_SUCCEEDED, "wx_lianlian", "a1", amount_minor=1_500, latency_ms=100),
        *(outcome(PAYMENT_ATTEMPT_FAILED, "wx_sp", f"s{i}", outcome="error", latency_ms=300) for i in range(3)),
        outcome(PAYMENT_ATTEMPT_FAILED, "wx_lianlian", "a2", outcome="declined", latency_ms=200),
        outcome(PAYMENT_FAILED, "wx_lianlian", "a2"),  # the same attempt again: counted once
        outcome(PAYMENT_ATTEMPT_FAILED, "wx_sp", "s3", outcome="timeout"),
        outcome(PAYMENT_FAILED, "wx_sp", "s3"),
        outcome(PAYMENT_ATTEMPT_FAILED, "wx_sp", "s4", outcome="error"),  # the fifth failure in a row: opens
        outcome(PAYMENT_SUCCEEDED, "wx_lianlian", "a3", amount_minor=2_500),
        outcome(PAYMENT_ATTEMPT_FAILED, "wx_sp", "s5", outcome="error"),  # open: the breaker ignores it
    ]


async def health_rows(uow: UnitOfWork) -> dict[str, Any]:
    async with uow.read() as conn:
        breakers = (await conn.execute(select(route_health).order_by(route_health.c.route_id))).mappings().all()
        buckets = (
            await conn.execute(
                select(
                    route_health_buckets.c.route_id,
                    *(
                        func.sum(route_health_buckets.c[name]).label(name)
                        for name in ("attempts", "succeeded", "declined", "errors", "timeouts", "latency_ms_sum")
                    ),
                    func.sum(route_health_buckets.c.latency_samples).label("latency_samples"),
                )
                .group_by(route_health_buckets.c.route_id)
                .order_by(route_health_buckets.c.route_id)
            )
        ).all()
        volume = (
            await conn.execute(
                select(route_daily_volume.c.route_id, func.sum(route_daily_volume.c.volume_minor)).group_by(
                    route_daily_volume.c.route_id
                )
            )
        ).all()
        opened = await conn.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.event_type == "route.circuit_opened")
        )
    return {
        "breakers": [{k: v for k, v in row.items() if k != "updated_at"} for row in breakers],
        "buckets": [tuple(row) for row in buckets],
        "volume": [tuple(row) for row in volume],
        "opened": opened,
    }


async def apply(uow: UnitOfWork, events: list[Envelope], *, as_run: bool) -> None:
    """The events in one transaction: as one run of the batched handler (what the inbox does with a fetched batch),
    or one call per event (a run of one each, as after a batch's fall-back, but in one transaction)."""
    async with uow.begin() as tx:
        if as_run:
            await on_payment_outcomes(tx, events)
        else:
            for event in events:
                await on_payment_outcome(tx, event)


@pytest.mark.parametrize("as_run", [False, True], ids=["one-by-one", "as-a-run"])
async def test_a_batch_in_one_transaction_counts_each_attempt_once(
    make_app: Callable[..., Any], routing_db: str, as_run: bool
) -> None:
    await seed(await make_app())
    engine = create_engine(routing_db)
    try:
        uow = UnitOfWork(engine, source="routing")
        events = batch()
        await apply(uow, events, as_run=as_run)
        after_batch = await health_rows(uow)

        breakers = {row["route_id"]: row for row in after_batch["breakers"]}
        assert breakers["wx_sp"]["state"] == "open"
        lianlian = breakers["wx_lianlian"]
        assert lianlian["state"] == "closed" and lianlian["consecutive_failures"] == 0
        # Three attempts counted by the breaker (a minute boundary during the batch moves some to `previous`).
        assert lianlian["window_attempts"] + lianlian["previous_attempts"] == 3
        assert after_batch["buckets"] == [
            # route, attempts, succeeded, declined, errors, timeouts, latency sum, latency samples
            ("wx_lianlian", 3, 2, 1, 0, 0, 300, 2),
            ("wx_sp", 6, 0, 0, 5, 1, 900, 3),
        ]
        assert after_batch["volume"] == [("wx_lianlian", 4_000)]
        assert after_batch["opened"] == 1

        # The batch again (a redelivery the inbox did not catch, or the attempts reported by other events).
        await apply(uow, events, as_run=as_run)
        assert await health_rows(uow) == after_batch
    finally:
        await engine.dispose()
