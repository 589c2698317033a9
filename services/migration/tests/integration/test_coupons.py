"""Migrating users' unused coupons into marketing: a real ledger process and a real marketing process, the
run's flows in this process (the CLI once, as a real process, for the dry run).

Dry run: exactly the bad coupon rows rejected, nothing in marketing. Real run: marketing down mid-run → 503
`marketing_unavailable` after the persons are written, resumed → every coupon once, codes kept, owned by the
migrated persons, reconciled by count and face value per currency against the control file; the same files
again → the same run, nothing new. Reversal: the unused coupons voided, a locked one counted, not voided.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.services import REPO_ROOT, SERVICES
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET
from libs.common.testing.infra import ServiceProcess
from libs.common.testing.plugin import DatabaseFactory
from libs.common.testing.waiting import eventually
from services.migration.clients.ledger import LedgerClient
from services.migration.clients.marketing import MarketingClient
from services.migration.domain.rows import Kind, juhe_holder_id
from services.migration.flows import runs as flow
from services.migration.tests import generate as g

pytestmark = pytest.mark.timeout(600)
PLATFORM = "plt_coupons"
COUPON_FIELDS = [
    "source_id",
    "person_source_id",
    "code",
    "face_value_minor",
    "currency",
    "threshold_minor",
    "valid_from",
    "valid_until",
    "merchant_source_id",
]


@dataclass
class Env:
    ledger: ServiceProcess
    marketing: ServiceProcess
    migration_db: str
    marketing_engine: AsyncEngine
    migration_engine: AsyncEngine
    root: Path

    def cli_env(self, platform: str, batch_rows: int = 500) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "JUHE_MIGRATION_DATABASE_URL": self.migration_db,
            "JUHE_MIGRATION_LEDGER_URL": self.ledger.base_url,
            "JUHE_MIGRATION_MARKETING_URL": self.marketing.base_url,
            "JUHE_MIGRATION_PLATFORM": platform,
            "JUHE_MIGRATION_BATCH_ROWS": str(batch_rows),
        }

    def cli(self, platform: str, args: list[str], batch_rows: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "services.migration.cli", *args],
            cwd=REPO_ROOT,
            env=self.cli_env(platform, batch_rows),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def migration(self, marketing_url: str | None = None) -> flow.Migration:
        ledger = LedgerClient(self.ledger.base_url, timeout_seconds=60)
        marketing = MarketingClient(
            marketing_url or self.marketing.base_url, timeout_seconds=10, identity_secret=DEMO_INTERNAL_TOKEN_SECRET
        )
        return flow.Migration(
            UnitOfWork(self.migration_engine, source="migration"), ledger, PLATFORM, 2, marketing=marketing
        )

    async def coupons(self) -> list[dict[str, Any]]:
        async with self.marketing_engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT user_id, code, face_value_minor, currency, status, source,"
                    " stock_id FROM coupons ORDER BY code"
                )
            )
            return [dict(r) for r in rows.mappings()]


@pytest.fixture(scope="module")
async def env(
    juhe_infra: Any, migrated_database: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    ledger_db, marketing_db = await migrated_database("ledger"), await migrated_database("marketing")
    migration_db = await migrated_database("migration")
    processes = [
        ServiceProcess(
            SERVICES[name],
            {"database_url": db, "role": "api", "kafka_bootstrap_servers": juhe_infra.bootstrap},
            log_dir=juhe_infra.root / "logs",
            ready_path="/livez",
        )
        for name, db in (("ledger", ledger_db), ("marketing", marketing_db))
    ]
    await asyncio.gather(*(asyncio.to_thread(p.start) for p in processes))
    marketing_engine, migration_engine = create_async_engine(marketing_db), create_async_engine(migration_db)
    try:
        ledger, marketing = processes
        yield Env(ledger, marketing, migration_db, marketing_engine, migration_engine, tmp_path_factory.mktemp("cpn"))
    finally:
        await marketing_engine.dispose()
        await migration_engine.dispose()
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in processes))


def coupon(n: int, person: int, face: int, **over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "source_id": f"C{n}",
        "person_source_id": f"P{person}",
        "code": f"OLD-{n:06d}",
        "face_value_minor": face,
        "currency": "CNY",
        "threshold_minor": 1000,
        "valid_from": (now - timedelta(days=5)).isoformat(),
        "valid_until": (now + timedelta(days=60)).isoformat(),
        "merchant_source_id": "",
        **over,
    }


def files(
    root: Path, coupons: list[dict[str, Any]], control: dict[str, tuple[int, int]], base: int = 70_000
) -> dict[str, Path]:
    root.mkdir()
    control_rows = [
        {"record": "merchants", "currency": "", "count": 1, "amount_minor": 0},
        {"record": "persons", "currency": "", "count": 3, "amount_minor": 0},
    ]
    control_rows += [
        {"record": "coupons", "currency": c, "count": n, "amount_minor": t} for c, (n, t) in control.items()
    ]
    return {
        "merchants": g.write_csv(root / "merchants.csv", g.MERCHANT_FIELDS, [g.merchant(base)]),
        "persons": g.write_jsonl(root / "persons.jsonl", [g.person(base + i) for i in range(3)]),
        "coupons": g.write_csv(root / "coupons.csv", COUPON_FIELDS, coupons, encoding="gbk"),
        "control": g.write_csv(root / "control.csv", g.CONTROL_FIELDS, control_rows),
    }


GOOD = [
    coupon(1, 70_000, 500),
    coupon(2, 70_000, 800, merchant_source_id="M70000"),
    coupon(3, 70_001, 500),
    coupon(4, 70_002, 300, currency="HKD"),
]
CONTROL = {"CNY": (3, 1800), "HKD": (1, 300)}


async def test_dry_run_rejects_exactly_the_bad_coupons_and_writes_nothing(env: Env) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    bad = [
        coupon(10, 70_000, 100, valid_until=past),
        coupon(11, 79_999, 100),
        coupon(1, 70_001, 100),
        coupon(12, 70_000, 0),
        coupon(13, 70_000, 100, code="no good"),
        coupon(14, 70_000, 100, merchant_source_id="M79999"),
    ]
    paths = files(env.root / "dry", [*GOOD, *bad], CONTROL)
    proc_env = env.cli_env("plt_dry")
    report_path = env.root / "dry-report.json"
    args = ["--quiet", "--report", str(report_path), "dry-run"]
    args += [x for kind, path in paths.items() for x in (f"--{kind}", str(path))]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.migration.cli", *args],
        cwd=REPO_ROOT,
        env=proc_env,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr.decode()
    report = json.loads(report_path.read_text())
    rejected = sorted((x["source_id"], x["reason"]) for x in report["rejected_rows"])
    assert rejected == [
        ("C1", "duplicate_source_id"),
        ("C10", "coupon_expired"),
        ("C11", "unknown_person"),
        ("C12", "bad_amount"),
        ("C13", "bad_field"),
        ("C14", "unknown_merchant"),
    ]
    assert report["rows"]["coupons"] == {"read": 10, "valid": 4, "rejected": 6}
    assert report["coupons"]["CNY"]["written_minor"] == 1800 and report["coupons"]["HKD"]["written_rows"] == 1
    assert await env.coupons() == []


async def test_run_resumes_after_marketing_was_down_then_reverses(env: Env) -> None:
    paths = files(env.root / "real", GOOD, CONTROL)
    run_files = flow.RunFiles(paths["merchants"], paths["persons"], None, paths["control"], coupons=paths["coupons"])
    down = env.migration(marketing_url="http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(Problem) as caught:
        await flow.start(down, run_files, dry_run=False)
    assert caught.value.spec.code == "marketing_unavailable"
    m = env.migration()
    run_id = await flow.start(m, run_files, dry_run=False)  # the same files: resumes the run
    run, report = await flow.report_of(m, run_id)
    assert run["status"] == "completed" and report["reconciled"], report["differences"]
    assert report["rows"]["coupons"] == {"read": 4, "written": 4}
    assert report["coupons"]["CNY"] == {
        "file_rows": 3,
        "file_minor": 1800,
        "written_rows": 3,
        "written_minor": 1800,
        "control_rows": 3,
        "control_minor": 1800,
    }
    coupons = await env.coupons()
    owner = [juhe_holder_id(PLATFORM, Kind.PERSONS, f"P{70_000 + i}") for i in (0, 0, 1, 2)]
    assert [(c["code"], c["user_id"], c["face_value_minor"], c["currency"], c["source"]) for c in coupons] == [
        (f"OLD-{n:06d}", o, f, cur, "migration")
        for n, o, f, cur in zip((1, 2, 3, 4), owner, (500, 800, 500, 300), ("CNY", "CNY", "CNY", "HKD"), strict=True)
    ]
    assert await flow.start(m, run_files, dry_run=False) == run_id  # again: the same run, nothing new
    assert len(await env.coupons()) == 4

    cashier = {IDENTITY_HEADER: mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="t", service="cashier")}
    lock = {
        "payment_id": "pay_mig_1",
        "coupon_code": "OLD-000001",
        "user_id": owner[0],
        "merchant_id": "mch_x",
        "order_amount_minor": 5000,
        "currency": "CNY",
    }
    async with httpx.AsyncClient(base_url=env.marketing.base_url) as client:
        locked = await client.post("/v1/internal/marketing/locks", json=lock, headers=cashier)
    assert locked.status_code == 201 and locked.json()["discount_minor"] == 500, locked.text

    reversed_report = await flow.reverse(m, run_id)
    voided = reversed_report["coupons_voided"]
    assert voided == {"voided_total": 3, "used_count": 1, "used_face_value_minor": {"CNY": 500}, "remaining_count": 0}
    assert [c["status"] for c in await env.coupons()] == ["locked", "voided", "voided", "voided"]
    async with env.migration_engine.connect() as conn:
        live = (
            await conn.execute(
                text("SELECT count(*) FROM migration_run_rows WHERE run_id = :r AND live"), {"r": run_id}
            )
        ).scalar_one()
    assert live == 0
    await m.ledger.close()
    assert m.marketing is not None
    await m.marketing.close()
    await down.ledger.close()


async def test_killed_in_the_coupons_phase_then_resumed_imports_each_coupon_once(env: Env) -> None:
    base, count = 71_000, 120
    rows = [coupon(1000 + n, base + n % 3, 100 + n, code=f"KIL-{n:06d}") for n in range(count)]
    paths = files(env.root / "kill", rows, {"CNY": (count, sum(100 + n for n in range(count)))}, base=base)
    args = ["--quiet", "run", *[x for kind, path in paths.items() for x in (f"--{kind}", str(path))]]
    cli = [sys.executable, "-m", "services.migration.cli"]
    proc = env.cli("plt_kill", args, batch_rows=7)
    sql = """SELECT coalesce(max(f.records_done), 0) FROM migration_run_files f JOIN migration_runs r ON r.id = f.run_id
              WHERE r.platform = 'plt_kill' AND f.kind = 'coupons'"""

    async def in_coupons() -> bool:
        async with env.migration_engine.connect() as conn:
            return int((await conn.execute(text(sql))).scalar_one()) >= 14 or proc.poll() is not None

    await eventually(in_coupons, "the run is in its coupons phase", timeout_seconds=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = await asyncio.to_thread(
        subprocess.run,
        [*cli, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=300,
        env=env.cli_env("plt_kill", batch_rows=7),
    )
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["reconciled"] and summary["rejected"] == 0, summary
    async with env.marketing_engine.connect() as conn:
        imported = (
            await conn.execute(text("SELECT code, face_value_minor FROM coupons WHERE code LIKE 'KIL-%' ORDER BY code"))
        ).all()
    assert [tuple(r) for r in imported] == [(f"KIL-{n:06d}", 100 + n) for n in range(count)]
