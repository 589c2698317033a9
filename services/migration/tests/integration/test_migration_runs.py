"""The migration tool end to end: the CLI as a real process against a real ledger process and PostgreSQL.

One ledger process and one migration database per module; each test uses its own platform and its own
document numbers, so the tests share the ledger without seeing each other's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from libs.common.services import REPO_ROOT, SERVICES
from libs.common.testing.infra import ServiceProcess
from libs.common.testing.plugin import DatabaseFactory
from libs.common.testing.waiting import eventually
from services.ledger.verify import verify
from services.migration.clients.ledger import LedgerClient
from services.migration.domain.rows import Kind, juhe_holder_id
from services.migration.flows import runs as flow
from services.migration.tests import generate as g

pytestmark = pytest.mark.timeout(600)


@dataclass
class Env:
    ledger: ServiceProcess
    ledger_db: str
    migration_db: str
    ledger_engine: AsyncEngine
    migration_engine: AsyncEngine
    root: Path

    def cli(self, platform: str, *args: str, batch_rows: int = 500) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "JUHE_MIGRATION_DATABASE_URL": self.migration_db,
            "JUHE_MIGRATION_LEDGER_URL": self.ledger.base_url,
            "JUHE_MIGRATION_PLATFORM": platform,
            "JUHE_MIGRATION_BATCH_ROWS": str(batch_rows),
        }
        return subprocess.Popen(
            [sys.executable, "-m", "services.migration.cli", "--quiet", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def run_cli(self, platform: str, *args: str, batch_rows: int = 500) -> tuple[int, dict[str, Any], str]:
        proc = self.cli(platform, *args, batch_rows=batch_rows)
        out, err = proc.communicate(timeout=300)
        lines = out.decode().strip().splitlines()
        return proc.returncode, (json.loads(lines[-1]) if lines else {}), err.decode()

    @contextlib.asynccontextmanager
    async def migration(self, platform: str, batch_rows: int = 500) -> AsyncIterator[flow.Migration]:
        """The CLI's flows in this process (each CLI process costs seconds of imports on a loaded machine)."""
        ledger = LedgerClient(self.ledger.base_url, timeout_seconds=60)
        try:
            yield flow.Migration(UnitOfWork(self.migration_engine, source="migration"), ledger, platform, batch_rows)
        finally:
            await ledger.close()

    async def ledger_scalar(self, sql: str, **params: Any) -> Any:
        async with self.ledger_engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar_one()

    async def migration_scalar(self, sql: str, **params: Any) -> Any:
        async with self.migration_engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar_one()

    async def balances_of(self, platform: str, run_id: str) -> dict[tuple[str, str, str], int]:
        """(person source id, sub-account, currency) → posted balance, read from the ledger for the run's persons."""
        async with self.migration_engine.connect() as conn:
            persons: dict[str, str] = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT juhe_id, source_id FROM migration_run_rows WHERE run_id = :r AND kind = 'persons'"
                            " AND status IN ('written', 'reversed')"
                        ),
                        {"r": run_id},
                    )
                ).all()
            )
        async with self.ledger_engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        """SELECT s.holder_id, s.subaccount_type, s.currency, sum(a.credits_posted - a.debits_posted)
                     FROM wallet_subaccounts s JOIN accounts a ON a.id = s.account_id
                    WHERE s.holder_id = ANY(:h) AND s.subaccount_type IN ('balance', 'prepaid', 'points')
                    GROUP BY 1, 2, 3"""
                    ),
                    {"h": list(persons)},
                )
            ).all()
        return {(persons[h], t, c): int(v) for h, t, c, v in rows if int(v) != 0}

    async def suspense(self, run_id: str) -> dict[str, int]:
        async with httpx.AsyncClient(base_url=self.ledger.base_url) as client:
            r = await client.get(f"/v1/internal/migration/runs/{run_id}/suspense")
            assert r.status_code == 200, r.text
            return {a["currency"]: a["balance_minor"] for a in r.json()["accounts"]}


@pytest.fixture(scope="module")
async def env(
    juhe_infra: Any, migrated_database: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    ledger_db = await migrated_database("ledger")
    migration_db = await migrated_database("migration")
    ledger = ServiceProcess(
        SERVICES["ledger"],
        {"database_url": ledger_db, "role": "api", "kafka_bootstrap_servers": juhe_infra.bootstrap},
        log_dir=juhe_infra.root / "logs",
        ready_path="/livez",
    )
    await asyncio.to_thread(ledger.start)
    ledger_engine, migration_engine = create_async_engine(ledger_db), create_async_engine(migration_db)
    try:
        yield Env(ledger, ledger_db, migration_db, ledger_engine, migration_engine, tmp_path_factory.mktemp("mig"))
    finally:
        await ledger_engine.dispose()
        await migration_engine.dispose()
        await asyncio.to_thread(ledger.stop)


def files_args(d: g.Dataset | dict[str, Path]) -> list[str]:
    paths = (
        d
        if isinstance(d, dict)
        else {"merchants": d.merchants, "persons": d.persons, "balances": d.balances, "control": d.control}
    )
    return [x for kind, path in paths.items() for x in (f"--{kind}", str(path))]


async def test_dry_run_rejects_exactly_the_bad_rows_and_writes_nothing(env: Env) -> None:
    root = env.root / "dry"
    root.mkdir()
    base = 10_000
    merchants = g.write_csv(
        root / "merchants.csv",
        g.MERCHANT_FIELDS,
        [
            g.merchant(base),
            g.merchant(base + 1),
            g.merchant(base + 2, credit_code="91350100M000100Y44"),  # bad check character
        ],
        encoding="gbk",
    )
    persons = g.write_jsonl(
        root / "persons.jsonl",
        [
            g.person(base),
            g.person(base + 1),
            g.person(base + 2),
            g.person(base + 3, resident_id="110105194912310021"),  # bad checksum
            g.person(base + 4, source_id=f"P{base}"),  # duplicate source id
            g.person(base + 5, resident_id=g.resident_id(base + 1)),  # duplicate document
        ],
    )
    balances = g.write_csv(
        root / "balances.csv",
        g.BALANCE_FIELDS,
        [
            g.balance("B1", f"P{base}", 1000),
            g.balance("B2", f"P{base + 1}", 2000, "prepaid", "CNY", f"M{base}"),
            g.balance("B3", f"P{base + 2}", 300, "points", "XXX"),
            g.balance("B4", f"P{base + 2}", -5),  # negative balance
            g.balance("B5", f"P{base + 1}", 700, "prepaid", "CNY", "M404"),  # unknown merchant
            g.balance("B6", f"P{base + 3}", 100),  # its person was rejected
            g.balance("B1", f"P{base + 2}", 100),  # duplicate source id
        ],
    )
    control = g.write_csv(
        root / "control.csv",
        g.CONTROL_FIELDS,
        [
            {"record": "merchants", "currency": "", "count": 3, "amount_minor": 0},
            {"record": "persons", "currency": "", "count": 6, "amount_minor": 0},
            {"record": "balances", "currency": "CNY", "count": 6, "amount_minor": 3895},
            {"record": "balances", "currency": "XXX", "count": 1, "amount_minor": 300},
        ],
    )
    holders_before = await env.ledger_scalar("SELECT count(*) FROM wallet_holders")
    transfers_before = await env.ledger_scalar("SELECT count(*) FROM transfers")
    report_path = root / "report.json"
    code, summary, err = env.run_cli(
        "pf-dry",
        "--report",
        str(report_path),
        "dry-run",
        *files_args({"merchants": merchants, "persons": persons, "balances": balances, "control": control}),
    )
    assert code == 1, err  # rejections: not reconciled
    assert summary["mode"] == "dry_run" and summary["rejected"] == 8
    report = json.loads(report_path.read_text())
    rejected = {(x["kind"], x["source_id"], x["reason"]) for x in report["rejected_rows"]}
    assert rejected == {
        ("merchants", f"M{base + 2}", "bad_credit_code"),
        ("persons", f"P{base + 3}", "bad_resident_id"),
        ("persons", f"P{base}", "duplicate_source_id"),
        ("persons", f"P{base + 5}", "duplicate_document"),
        ("balances", "B4", "negative_balance"),
        ("balances", "B5", "unknown_merchant"),
        ("balances", "B6", "unknown_person"),
        ("balances", "B1", "duplicate_source_id"),
    }
    assert report["rows"]["merchants"] == {"read": 3, "valid": 2, "rejected": 1}
    assert report["files"]["merchants"]["encoding"] == "gbk" and report["files"]["persons"]["encoding"] == "utf-8"
    assert report["money"]["CNY"]["written_minor"] == 3000 and report["money"]["XXX"]["written_minor"] == 300
    # Nothing reached the ledger.
    assert await env.ledger_scalar("SELECT count(*) FROM wallet_holders") == holders_before
    assert await env.ledger_scalar("SELECT count(*) FROM transfers") == transfers_before
    assert await env.migration_scalar("SELECT count(*) FROM migration_run_rows WHERE live") == 0


async def test_kill_three_times_then_resume_equals_an_uninterrupted_run(env: Env) -> None:
    data = g.clean_dataset(env.root / "kill", base=20_000, merchants=4, persons=120)
    platform, args = "pf-kill", ["run", *files_args(data)]
    rng = random.Random(7)
    for _ in range(3):
        proc = env.cli(platform, *args, batch_rows=15)
        floor = await _progress(env, platform)
        target = floor + rng.randint(10, 80)

        async def past_target(target: int = target, proc: subprocess.Popen[bytes] = proc) -> bool:
            return await _progress(env, platform) >= target or proc.poll() is not None

        await eventually(past_target, "the run passed its kill point", timeout_seconds=120)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    code, summary, err = env.run_cli(platform, *args, batch_rows=15)
    assert code == 0, err
    assert summary["status"] == "completed" and summary["reconciled"] and summary["rejected"] == 0
    run_id = summary["run_id"]
    assert await env.migration_scalar("SELECT count(*) FROM migration_runs WHERE platform = :p", p=platform) == 1
    assert await env.balances_of(platform, run_id) == {k: v for k, v in data.expected.items() if v}
    assert set((await env.suspense(run_id)).values()) == {0}
    # Exactly one transfer per opening with an amount, plus one control per currency: no doubles.
    openings = sum(1 for v in data.expected.values() if v)  # one row per key in this dataset
    transfers = await env.ledger_scalar(
        "SELECT count(*) FROM transfers WHERE source = 'migration' AND metadata->>'migration_run' = :r", r=run_id
    )
    assert transfers == openings + 2
    assert await verify(env.ledger_db) == {}

    # Running the finished files again changes nothing; finalised, the run is no longer reversible.
    entries = await env.ledger_scalar("SELECT count(*) FROM entries")
    async with env.migration(platform) as m:
        files = flow.RunFiles(data.merchants, data.persons, data.balances, data.control)
        assert await flow.start(m, files, dry_run=False) == run_id
        assert await env.ledger_scalar("SELECT count(*) FROM entries") == entries
        assert (await flow.finalise(m, run_id))["reconciled"]
        with pytest.raises(Problem) as refused:
            await flow.reverse(m, run_id)
        assert refused.value.spec.code == "run_state_invalid"

    # A bulk-opened holder is the holder the public API opens: the same body again is a replay (200).
    p = g.person(20_000)
    body = {
        "holder_id": juhe_holder_id(platform, Kind.PERSONS, "P20000"),
        "holder_type": "person",
        "name": p["name"],
        "resident_id": p["resident_id"],
        "phone": p["phone"],
        "bank_card": p["bank_card"],
    }
    async with httpx.AsyncClient(base_url=env.ledger.base_url) as client:
        replay = await client.post("/v1/wallet/holders", json=body)
        assert replay.status_code == 200 and replay.json()["kyc_level"] == 2, replay.text


async def test_unreconciled_run_is_refused_finalisation_and_reversal_empties_it(env: Env) -> None:
    data = g.clean_dataset(env.root / "rev", base=30_000, merchants=3, persons=30, control_delta_minor=1)
    platform = "pf-rev"
    code, summary, err = env.run_cli(platform, "run", *files_args(data), batch_rows=7)
    assert code == 1 and summary["status"] == "completed" and not summary["reconciled"], err
    run_id = summary["run_id"]
    assert (await env.suspense(run_id))["CNY"] == 1  # the control total is 1 fen more than the balances

    async with env.migration(platform, batch_rows=7) as m:
        with pytest.raises(Problem) as refused:
            await flow.finalise(m, run_id)
        assert refused.value.spec.code == "finalisation_refused"
        assert "CNY: suspense holds 1, not 0" in refused.value.extensions["differences"]
        assert (await flow.reverse(m, run_id))["rows"]["balances"]["reversed"] == data.balance_rows
    async with env.migration_engine.connect() as conn:
        assert (
            await conn.execute(text("SELECT status FROM migration_runs WHERE id = :r"), {"r": run_id})
        ).scalar_one() == "reversed"
    assert await env.balances_of(platform, run_id) == {}
    assert set((await env.suspense(run_id)).values()) == {0}
    assert (
        await env.migration_scalar("SELECT count(*) FROM migration_run_rows WHERE run_id = :r AND live", r=run_id) == 0
    )
    assert await verify(env.ledger_db) == {}

    # The source ids are free again: a corrected control file migrates the same rows in a new run.
    fixed = g.clean_dataset(env.root / "rev2", base=30_000, merchants=3, persons=30)
    async with env.migration(platform) as m:
        second = await flow.start(
            m, flow.RunFiles(fixed.merchants, fixed.persons, fixed.balances, fixed.control), dry_run=False
        )
        assert second != run_id and (await flow.report_of(m, second))[1]["reconciled"]
    assert await env.balances_of(platform, second) == {k: v for k, v in fixed.expected.items() if v}


async def test_credit_lines_migrate_with_their_limit_reconcile_and_reverse(env: Env) -> None:
    root, base, platform = env.root / "credit", 50_000, "pf-credit"
    root.mkdir()
    persons = g.write_jsonl(root / "persons.jsonl", [g.person(base + i) for i in range(3)])
    balances = g.write_csv(
        root / "balances.csv",
        [*g.BALANCE_FIELDS, "credit_limit_minor"],
        [
            {**g.balance(f"B{base}", f"P{base}", 5000), "credit_limit_minor": ""},
            {**g.balance(f"B{base + 1}", f"P{base + 1}", 7000), "credit_limit_minor": ""},
            {**g.balance(f"L{base}", f"P{base}", 3000, "credit"), "credit_limit_minor": "10000"},
            {**g.balance(f"L{base + 2}", f"P{base + 2}", 2500, "credit"), "credit_limit_minor": "2500"},
        ],
    )
    control = g.write_csv(
        root / "control.csv",
        g.CONTROL_FIELDS,
        [
            {"record": "persons", "currency": "", "count": 3, "amount_minor": 0},
            {"record": "balances", "currency": "CNY", "count": 2, "amount_minor": 12_000},
            {"record": "credit", "currency": "CNY", "count": 2, "amount_minor": 5500},
        ],
    )

    async def lines() -> dict[str, tuple[int, int]]:
        """Person source id → (credit limit, owed) of the run's persons' credit lines, from the ledger."""
        async with env.migration_engine.connect() as conn:
            holders: dict[str, str] = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT juhe_id, source_id FROM migration_run_rows WHERE run_id = :r AND kind = 'persons'"
                        ),
                        {"r": run_id},
                    )
                ).all()
            )
        async with env.ledger_engine.connect() as conn:
            sql = """SELECT s.holder_id, a.credit_limit_minor, a.debits_posted - a.credits_posted
                       FROM wallet_subaccounts s JOIN accounts a ON a.id = s.account_id
                      WHERE s.holder_id = ANY(:h) AND s.subaccount_type = 'credit'"""
            rows = (await conn.execute(text(sql), {"h": list(holders)})).all()
        return {holders[h]: (int(limit), int(owed)) for h, limit, owed in rows if limit or owed}

    async with env.migration(platform) as m:
        run_id = await flow.start(m, flow.RunFiles(persons=persons, balances=balances, control=control), dry_run=False)
        _, report = await flow.report_of(m, run_id)
        assert report["reconciled"], report["differences"]
        assert report["money"]["CNY"]["written_minor"] == 12_000
        assert report["money"]["CNY:credit"]["written_minor"] == 5500
        assert report["sample"] == {"checked": 3, "mismatches": []}  # read back: owed is a debit on the line
        assert await lines() == {f"P{base}": (10_000, 3000), f"P{base + 2}": (2500, 2500)}
        assert await env.suspense(run_id) == {"CNY": 0}
        assert await verify(env.ledger_db) == {}

        await flow.reverse(m, run_id)
    assert await lines() == {}  # nothing owed, and the lines closed (limit 0): nothing left to spend on
    assert await env.balances_of(platform, run_id) == {}
    assert await env.suspense(run_id) == {"CNY": 0}
    assert await verify(env.ledger_db) == {}


async def test_api_runs_a_migration_for_the_calling_platform_only(
    env: Env, running_apps: Any, service_settings: Any
) -> None:
    from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
    from services.migration.app import create_app

    data = g.clean_dataset(env.root / "api", base=40_000, merchants=2, persons=12)
    settings = service_settings(
        "migration",
        database_url=env.migration_db,
        ledger_url=env.ledger.base_url,
        import_dir=str(data.merchants.parent),
        role="api",
        batch_rows=5,
    )
    client = await running_apps(create_app(settings))
    secret = settings.internal_token_secret.get_secret_value()

    def who(*, platform: str | None = None, merchant_id: str | None = None) -> dict[str, str]:
        return {IDENTITY_HEADER: mint_identity_token(secret, key_id="k", platform=platform, merchant_id=merchant_id)}

    operator, other = who(platform="pf-api"), who(platform="pf-other")
    body = {
        "dry_run": False,
        "merchants": "merchants.csv",
        "persons": "persons.jsonl",
        "balances": "balances.csv",
        "control": "control.csv",
    }
    refused = await client.post("/v1/migrations/runs", json=body, headers=who(merchant_id="m1"))
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    escape = await client.post("/v1/migrations/runs", json={**body, "persons": "../x.jsonl"}, headers=operator)
    assert escape.status_code == 422 and escape.json()["code"] == "source_invalid"

    started = await client.post("/v1/migrations/runs", json=body, headers=operator)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]

    async def completed() -> dict[str, Any] | None:
        r = await client.get(f"/v1/migrations/runs/{run_id}", headers=operator)
        return r.json() if r.json()["status"] == "completed" else None

    run = await eventually(completed, "the API's run completed", timeout_seconds=120)
    assert run["report"]["reconciled"] and run["report"]["sample"]["checked"] == 12, run["report"]
    assert run["report"]["sample"]["mismatches"] == []
    hidden = await client.get(f"/v1/migrations/runs/{run_id}", headers=other)
    assert hidden.status_code == 404 and hidden.json()["code"] == "run_not_found"
    final = await client.post(f"/v1/migrations/runs/{run_id}/finalise", headers=operator)
    assert final.status_code == 200 and final.json()["status"] == "finalised"
    again = await client.post(f"/v1/migrations/runs/{run_id}/finalise", headers=operator)
    assert again.status_code == 409 and again.json()["code"] == "run_state_invalid"
    listed = await client.get("/v1/migrations/runs", headers=operator)
    assert [r["id"] for r in listed.json()["data"]] == [run_id] and listed.json()["has_more"] is False
    bad_cursor = await client.get("/v1/migrations/runs", params={"cursor": "x"}, headers=operator)
    assert bad_cursor.status_code == 422 and bad_cursor.json()["code"] == "validation_failed"


async def _progress(env: Env, platform: str) -> int:
    sql = """SELECT coalesce(sum(f.records_done), 0) FROM migration_run_files f JOIN migration_runs r ON r.id = f.run_id
              WHERE r.platform = :p"""
    return int(await env.migration_scalar(sql, p=platform))
