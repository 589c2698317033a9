"""One bad transfer fails alone: the batching writer isolates a command its batch cannot write.

The boundary refuses unstorable text (libs/common/unstorable.py), so these commands are handed to the
writer directly, past it: defence in depth for whatever else could make one item of a batch unwritable.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from libs.common.failures import is_unstorable_text_error, outage_spec
from services.ledger.app import create_app
from services.ledger.context import ledger_context
from services.ledger.domain.engine import CreateTransfers, Outcome
from services.ledger.tests.unit.harness import request

from .conftest import Ledger

CONCURRENT = 54
# Spread over the whole run, so both of the writer's batches (it splits a busy queue in two and pipelines
# the second half) carry bad items: the locked path and the pipelined path both isolate.
BAD_POSITIONS = frozenset({3, 17, 30, 44, 53})
# Refused by Python (a lone surrogate cannot be encoded: the event envelope) or by PostgreSQL (U+0000 in jsonb),
# in a value or a key, nested.
UNSTORABLE: tuple[dict[str, Any], ...] = (
    {"note": "\udfff"},
    {"note": "a\x00b"},
    {"nested": {"list": ["ok", "\ud800"]}},
    {"\udfff": 1},
    {"k\x00": "v"},
)


async def test_bad_text_in_a_batch_fails_alone(
    migrated_database: Callable[[str], Any], service_settings: Callable[..., Any], running_apps: Callable[..., Any]
) -> None:
    url = await migrated_database("ledger")
    app = create_app(service_settings("ledger", database_url=url, role="api"))
    ledger = Ledger(await running_apps(app), url)
    writer = ledger_context(app.state.runtime).writer
    source = await ledger.open("channel_clearing", "1101", holder_id="platform")
    target = await ledger.open("platform_fee_income", "4101", holder_id="platform")
    events_before = await ledger.count("outbox")  # the accounts' own events
    commands = []
    for i in range(CONCURRENT):
        transfer = request(source, target, 1 + i, key=f"iso-{i}")
        if i in BAD_POSITIONS:
            transfer = dataclasses.replace(transfer, metadata=UNSTORABLE[sorted(BAD_POSITIONS).index(i)])
        commands.append(CreateTransfers((transfer,)))

    outcomes = await asyncio.gather(*(writer.submit(c) for c in commands), return_exceptions=True)

    for i, outcome in enumerate(outcomes):
        if i in BAD_POSITIONS:
            assert isinstance(outcome, Exception), (i, outcome)
            assert is_unstorable_text_error(outcome) and outage_spec(outcome) is None, repr(outcome)
        else:
            assert isinstance(outcome, list), (i, outcome)
            [result] = outcome
            assert isinstance(result, Outcome) and result.ok and not result.replayed, (i, result)
    good = [i for i in range(CONCURRENT) if i not in BAD_POSITIONS]
    assert await ledger.count("transfers") == len(good)
    assert (await ledger.balances(target))["credits_posted"] == sum(1 + i for i in good)
    assert await ledger.count("outbox") == events_before + len(good)  # one event per written transfer
    await ledger.assert_verified()

    # The refused keys stay free: the same transfers with clean text go through.
    retried = await asyncio.gather(
        *(writer.submit(CreateTransfers((request(source, target, 1 + i, key=f"iso-{i}"),))) for i in BAD_POSITIONS)
    )
    assert all(r[0].ok and not r[0].replayed for r in retried)
    await ledger.assert_verified()
