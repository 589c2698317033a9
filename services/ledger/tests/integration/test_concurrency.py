"""Concurrency: no overdraft under contention, one posting per idempotency key, two writers on one database.

After every test the ledger is verified (`python -m services.ledger.verify`, in-process and as the CLI).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

from .conftest import Ledger, body

CLIENTS = 50
SPENDS_FUNDED = 30


async def _setup(ledger: Ledger) -> tuple[str, str, str]:
    clearing = await ledger.open("channel_clearing", "1101", holder_id="platform")
    wallet = await ledger.wallet()
    fee = await ledger.open("platform_fee_income", "4101", holder_id="platform")  # the hot account
    assert (await ledger.transfer(clearing, wallet, SPENDS_FUNDED * 7)).status_code == 201
    return clearing, wallet, fee


def _verify_cli(database_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.ledger.verify", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")


async def test_fifty_clients_spend_thirty_funded(ledger: Ledger) -> None:
    _, wallet, fee = await _setup(ledger)
    responses = await asyncio.gather(*(ledger.transfer(wallet, fee, 7) for _ in range(CLIENTS)))
    codes = [r.status_code for r in responses]
    assert codes.count(201) == SPENDS_FUNDED
    refused = [r.json()["code"] for r in responses if r.status_code != 201]
    assert refused == ["insufficient_funds"] * (CLIENTS - SPENDS_FUNDED)
    b = await ledger.balances(wallet)
    assert b["posted_balance_minor"] == 0 and b["available_balance_minor"] == 0
    await ledger.assert_verified()
    await asyncio.to_thread(_verify_cli, ledger.database_url)


async def test_same_key_twenty_times_posts_once(ledger: Ledger) -> None:
    _, wallet, fee = await _setup(ledger)
    same = body(wallet, fee, 7, key="pay_dup:succeeded")
    responses = await asyncio.gather(*(ledger.client.post("/v1/transfers", json=same) for _ in range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert (await ledger.balances(wallet))["debits_posted"] == 7
    assert await ledger.count("transfers") == 2
    await ledger.assert_verified()


async def test_two_replicas_share_the_database_safely(ledger_factory) -> None:  # type: ignore[no-untyped-def]
    """Two processes' writers (own pools, own batches) on one database: row locks keep limits exact."""
    a = await ledger_factory()
    b = await ledger_factory(database_url=a.database_url)
    _, wallet, fee = await _setup(a)
    spends = [(a if i % 2 else b).transfer(wallet, fee, 7) for i in range(CLIENTS)]
    same = body(wallet, fee, 1, key="shared-key")
    dups = [(a if i % 2 else b).client.post("/v1/transfers", json=same) for i in range(10)]
    responses = await asyncio.gather(*spends, *dups)
    spent = responses[:CLIENTS]
    dup = responses[CLIENTS:]
    created_dup = [r for r in dup if r.status_code == 201]
    assert len(created_dup) <= 1 and len({r.json()["id"] for r in dup if r.status_code in (200, 201)}) <= 1
    # The 1-fen duplicate may take one fen the 7-fen spends needed: 29 or 30 spends fit, never more.
    successes = sum(1 for r in spent if r.status_code == 201)
    assert successes == SPENDS_FUNDED - (1 if created_dup else 0)
    assert all(r.json()["code"] == "insufficient_funds" for r in spent if r.status_code != 201)
    b_wallet = await a.balances(wallet)
    assert b_wallet["debits_posted"] == successes * 7 + (1 if created_dup else 0)
    assert b_wallet["posted_balance_minor"] >= 0
    await a.assert_verified()


async def test_pipelined_batches_keep_limits_exact(ledger: Ledger) -> None:
    """One command per batch (batch_transfers_max=5), 20 queued at once: every batch after the first is
    computed on top of the previous, uncommitted one (the optimistic pipeline) and limits stay exact."""
    from libs.common.db import UnitOfWork, create_engine
    from services.ledger.api.routes.transfers import to_domain
    from services.ledger.api.schemas import TransferCreateRequest
    from services.ledger.domain.engine import CreateTransfers
    from services.ledger.store.writer import LedgerWriter

    _, wallet, fee = await _setup(ledger)  # funded for exactly 30 spends of 7
    engine = create_engine(ledger.database_url)
    writer = LedgerWriter(UnitOfWork(engine, source="ledger"), batch_transfers_max=5)
    try:
        commands = [
            CreateTransfers(tuple(to_domain(TransferCreateRequest(**body(wallet, fee, 7))) for _ in range(5)))
            for _ in range(20)
        ]
        results = await asyncio.gather(*(writer.submit(c) for c in commands))
    finally:
        await writer.stop()
        await engine.dispose()
    outcomes = [o for result in results for o in result]
    assert sum(1 for o in outcomes if o.ok) == SPENDS_FUNDED
    assert {o.error.code for o in outcomes if o.error} == {"insufficient_funds"}
    assert writer.optimistic_commits > 0
    assert (await ledger.balances(wallet))["posted_balance_minor"] == 0
    await ledger.assert_verified()


async def test_optimistic_batch_recomputed_when_another_writer_got_there_first(ledger: Ledger) -> None:
    """A batch computed without locks is thrown away if the locked rows differ from what it read."""
    from libs.common.db import UnitOfWork, create_engine
    from services.ledger.api.routes.transfers import to_domain
    from services.ledger.api.schemas import TransferCreateRequest
    from services.ledger.domain.engine import CreateTransfers
    from services.ledger.store.writer import LedgerWriter, _Chain

    _, wallet, fee = await _setup(ledger)
    engine = create_engine(ledger.database_url)
    writer = LedgerWriter(UnitOfWork(engine, source="ledger"))
    try:
        command = CreateTransfers((to_domain(TransferCreateRequest(**body(wallet, fee, 7 * SPENDS_FUNDED))),))
        prepared = await writer._prepare([command], [None], _Chain(accounts={}, keys={}, now=datetime.now(UTC)))
        assert prepared is not None and prepared.results[0][0].ok  # computed on the full balance
        assert (await ledger.transfer(wallet, fee, 7)).status_code == 201  # another writer spends first
        assert await writer._commit_prepared(prepared) is None
        assert writer.optimistic_fallbacks == 1
        [[outcome]] = await writer.write_batch([command])  # the locked path now refuses it
        assert outcome.error is not None and outcome.error.code == "insufficient_funds"
    finally:
        await writer.stop()
        await engine.dispose()
    await ledger.assert_verified()
