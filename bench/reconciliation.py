"""Reconciliation benchmark: a naive load-everything matcher vs Juhe's reconciliation run, in one run.

    python -m bench.reconciliation [--quick] [--lines N]

Workload: a generated channel bill of N lines (default 1,000,000; `--quick` 100,000) as NDJSON, the
exact wire format the cashier's `GET /v1/internal/bills/...` streams to settlement, and Juhe's matching
records of that day. About 0.1 % of lines are made to disagree (amount, fee, status), 0.05 % are
missing from the bill and 0.05 % are missing from Juhe, so every outcome is exercised.

The bill is written to a file and Juhe's records to a file and to settlement's `payment_records` in an
embedded PostgreSQL (not timed): every design then reads the same bytes.

1. baseline   reads the whole bill into a list of dicts (`json.loads` per line) and all records into a
              dict of dicts, then matches by out_trade_no with a channel_trade_no fallback.
2. previous   Juhe before: bill streamed, the day's records indexed in Python (`domain.Matcher`).
3. juhe       settlement's real `flows.reconcile.reconcile` (the HTTP bill stream replaced by the file,
              parsed by the same `line_from_json`): lines COPYed into PostgreSQL, classified there by
              set-based SQL, items written by the database; run row, items and counts really stored.
              Run at N and at N/10 to show that Python's memory does not grow with the bill.

Each design runs in its own child process so its peak RSS (ru_maxrss) is its own. For juhe the join
runs in PostgreSQL, so the PostgreSQL backend that served the run is reported too: its peak RSS
(VmHWM, which includes the shared buffers it touched, 128 MB here) and its temporary-file spill.
All designs must classify every line identically (the run fails otherwise). The last line is the JSON
the issue asks for; `peak_rss_mb` is the Juhe Python process at N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import text

from libs.common.db import UnitOfWork, asyncpg_dsn, create_engine
from services.settlement.clients.cashier import line_from_json
from services.settlement.config import Settings
from services.settlement.domain.reconciliation import Line, Matcher, Outcome, Record
from services.settlement.flows.reconcile import reconcile
from services.settlement.store import reconciliation as store

LINES_FULL = 1_000_000
LINES_QUICK = 100_000
FEE_RATE_BPS = 60
CHANNEL = "wechatpay"
BILL_DATE = date(2026, 11, 24)
COPY_BATCH_ROWS = 10_000


def _fee(amount_minor: int) -> int:
    return (amount_minor * FEE_RATE_BPS + 5_000) // 10_000


def _amount(i: int) -> int:
    return 100 + (i * 7919) % 99_900


def records(n: int) -> Iterator[Record]:
    """Juhe's records of the day: one per bill line, minus 0.05 % the channel has and Juhe lacks."""
    for i in range(n):
        if i % 2000 == 1:
            continue  # missing in Juhe
        status = "failed" if i % 5000 == 3 else "succeeded"
        amount = _amount(i)
        yield Record(
            "payment", f"{i:032x}", f"42{i:026d}", f"pay_{i:028x}", None, f"order-{i}", amount, _fee(amount), status
        )


def bill(n: int) -> Iterator[bytes]:
    """The channel bill as NDJSON lines, as the cashier streams it."""
    for i in range(n):
        if i % 2000 == 7:
            continue  # missing at the channel
        amount = _amount(i)
        fee = _fee(amount)
        if i % 1000 == 5:
            amount += 1
        if i % 3000 == 9:
            fee += 1
        row = {
            "kind": "payment",
            "out_trade_no": f"{i:032x}",
            "channel_trade_no": f"42{i:026d}",
            "amount_minor": amount,
            "fee_minor": fee,
            "status": "SUCCESS",
            "occurred_at": "2026-11-24T10:00:00+08:00",
            "out_refund_no": None,
            "channel_refund_no": None,
        }
        yield json.dumps(row, separators=(",", ":")).encode()


def write_inputs(n: int, directory: Path) -> tuple[Path, Path]:
    bill_path, records_path = directory / "bill.ndjson", directory / "records.ndjson"
    with bill_path.open("wb") as f:
        for raw in bill(n):
            f.write(raw + b"\n")
    with records_path.open("w") as f:
        for r in records(n):
            f.write(json.dumps(r._asdict(), separators=(",", ":")) + "\n")
    return bill_path, records_path


def read_records(records_path: Path) -> Iterator[Record]:
    """Juhe's records as the reconciliation flow gets them from its database (one row at a time)."""
    with records_path.open("rb") as f:
        for raw in f:
            yield Record(**json.loads(raw))


def run_baseline(bill_path: Path, records_path: Path) -> Counter[str]:
    """Everything in dicts first, then match (what a first version usually does)."""
    with bill_path.open("rb") as f:
        lines = [json.loads(raw) for raw in f]
    by_key: dict[str, dict[str, Any]] = {}
    by_channel_no: dict[str, str] = {}
    with records_path.open("rb") as f:
        for raw in f:
            r = json.loads(raw)
            by_key[r["key"]] = r
            if r["channel_trade_no"]:
                by_channel_no[r["channel_trade_no"]] = r["key"]
    counts: Counter[str] = Counter()
    for line in lines:
        key = line["out_trade_no"]
        rec = by_key.pop(key, None)
        if rec is None and line["channel_trade_no"] in by_channel_no:
            rec = by_key.pop(by_channel_no[line["channel_trade_no"]], None)
        if rec is None:
            counts[Outcome.MISSING_IN_JUHE.value] += 1
        elif rec["status"] != "succeeded":
            counts[Outcome.STATUS_MISMATCH.value] += 1
        elif rec["amount_minor"] != line["amount_minor"]:
            counts[Outcome.AMOUNT_MISMATCH.value] += 1
        elif rec["fee_minor"] is not None and rec["fee_minor"] != line["fee_minor"]:
            counts[Outcome.FEE_MISMATCH.value] += 1
        else:
            counts[Outcome.MATCHED.value] += 1
    counts[Outcome.MISSING_AT_CHANNEL.value] += sum(1 for r in by_key.values() if r["status"] == "succeeded")
    return counts


def run_previous(bill_path: Path, records_path: Path) -> Counter[str]:
    """Juhe before: the bill streamed, the day's records in a Python index (`Matcher`)."""
    matcher = Matcher(read_records(records_path))
    counts: Counter[str] = Counter()
    with bill_path.open("rb") as f:
        for raw in f:
            counts[matcher.match(line_from_json(raw)).outcome.value] += 1
    for result in matcher.leftovers():
        counts[result.outcome.value] += 1
    return counts


@dataclass
class FileBill:
    """The cashier's bill stream, read from the NDJSON file instead of HTTP (same bytes, same parser; as
    text lines, which is what httpx's `aiter_lines` gives the real client). There is no cashier here:
    re-queries answer `unavailable` (they are still stored, as in a real run)."""

    path: Path

    async def bill_lines(self, channel: str, bill_date: date, merchant_id: str) -> AsyncIterator[Line]:
        with self.path.open(encoding="utf-8") as f:
            for raw in f:
                yield line_from_json(raw)

    async def requery(self, payment_id: str) -> str:
        return "unavailable"


def merchant_of(n: int) -> str:
    return f"mch_bench_{n}"


async def load_records(db_url: str, n: int) -> None:
    """Juhe's records of the day into settlement's payment_records (setup, not timed)."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        rows = (
            (
                f"{r.payment_id}_{n}",
                merchant_of(n),
                r.merchant_order_no,
                CHANNEL,
                r.key,
                r.channel_trade_no,
                r.status,
                r.amount_minor,
                "CNY",
                r.fee_minor,
                BILL_DATE,
            )
            for r in records(n)
        )
        columns = [
            "payment_id",
            "merchant_id",
            "merchant_order_no",
            "channel",
            "out_trade_no",
            "channel_trade_no",
            "status",
            "amount_minor",
            "currency",
            "channel_fee_minor",
            "bill_date",
        ]
        await conn.copy_records_to_table("payment_records", records=rows, columns=columns)
        await conn.execute("ANALYZE payment_records")
    finally:
        await conn.close()


def peak_rss_of(pid: int) -> float | None:
    """VmHWM of another process (the PostgreSQL backend), in MB; None where /proc cannot tell."""
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return round(int(row.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


async def run_juhe(bill_path: Path, db_url: str, n: int) -> tuple[Counter[str], dict[str, Any]]:
    """settlement's reconciliation run on one pooled connection (so the backend measured is the one
    that did the work); the counts are read back from the stored run."""
    engine = create_engine(db_url, pool_size=1, max_overflow=0)
    uow = UnitOfWork(engine, source="settlement")
    try:
        async with uow.read() as conn:
            backend_pid = int(await conn.scalar(text("SELECT pg_backend_pid()")))
            temp_before = await conn.scalar(
                text("SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()")
            )
        started = time.perf_counter()
        run_id = await reconcile(
            uow,
            FileBill(bill_path),
            Settings(database_url=db_url),
            channel=CHANNEL,
            merchant_id=merchant_of(n),
            bill_date=BILL_DATE,
        )
        seconds = time.perf_counter() - started
        async with uow.read() as conn:
            run = await store.get_run(conn, run_id)
            assert await conn.scalar(text("SELECT pg_backend_pid()")) == backend_pid
            await conn.execute(text("SELECT pg_stat_force_next_flush()"))
        async with uow.read() as conn:
            temp_after = await conn.scalar(
                text("SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()")
            )
        extra = {
            "seconds": seconds,
            "postgres_backend_peak_rss_mb": peak_rss_of(backend_pid),
            "postgres_temp_mb": round((int(temp_after) - int(temp_before)) / 2**20, 1),
        }
    finally:
        await engine.dispose()
    assert run is not None and run["status"] == "finished", run
    return Counter({k: int(v) for k, v in dict(run["counts"]).items()}), extra


def child(design: str, directory: Path, db_url: str, n: int) -> None:
    paths = (directory / "bill.ndjson", directory / "records.ndjson")
    extra: dict[str, Any] = {}
    started = time.perf_counter()
    if design == "baseline":
        counts = run_baseline(*paths)
    elif design == "previous":
        counts = run_previous(*paths)
    else:
        counts, extra = asyncio.run(run_juhe(paths[0], db_url, n))
    seconds = time.perf_counter() - started
    bill_lines = sum(v for k, v in counts.items() if k != Outcome.MISSING_AT_CHANNEL.value)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # juhe times its reconciliation run alone (engine start and the figures read back afterwards excluded)
    result = {
        "design": design,
        "lines": bill_lines,
        "seconds": seconds,
        "counts": dict(counts),
        "peak_rss_mb": round(peak_rss_mb, 1),
        **extra,
    }
    print(json.dumps(result))


def measure(design: str, directory: Path, db_url: str, n: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.reconciliation",
            "--child",
            design,
            "--dir",
            str(directory),
            "--db",
            db_url,
            "--lines",
            str(n),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{design} child failed:\n{done.stderr[-3000:]}")
    print("\n".join(x for x in done.stderr.splitlines() if x.startswith("TICK")))
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def prepare_database(server_url: str, sizes: list[int]) -> str:
    from libs.common.embedded import create_database, database_url
    from libs.common.migrations import upgrade
    from libs.common.services import SERVICES

    name = f"bench_recon_{os.getpid()}"
    deadline = time.monotonic() + 30
    while True:  # the embedded server may accept TCP before it accepts sessions
        try:
            await create_database(server_url, name)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    db_url = database_url(server_url, name)
    await asyncio.to_thread(upgrade, SERVICES["settlement"].migrations_dir, db_url)
    for n in sizes:
        await load_records(db_url, n)
    return db_url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{LINES_QUICK:,} lines (and {LINES_QUICK // 10:,})")
    parser.add_argument("--lines", type=int, default=None)
    parser.add_argument("--child", choices=["baseline", "previous", "juhe"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.lines or (LINES_QUICK if args.quick else LINES_FULL)
    if args.child:
        child(args.child, Path(args.dir), args.db, n)
        return 0
    from libs.common.embedded import postgres_server

    small = max(1, n // 10)
    with tempfile.TemporaryDirectory(prefix="juhe-bench-recon-") as tmp, postgres_server(Path(tmp)) as server_url:
        t0 = time.perf_counter()
        for size in (n, small):
            (Path(tmp) / str(size)).mkdir()
            write_inputs(size, Path(tmp) / str(size))
        db_url = asyncio.run(prepare_database(server_url, [n, small]))
        print(f"setup: bills of {n:,} and {small:,} lines, records in PostgreSQL ({time.perf_counter() - t0:.1f}s)")
        big = Path(tmp) / str(n)
        baseline = measure("baseline", big, db_url, n)
        previous = measure("previous", big, db_url, n)
        juhe = measure("juhe", big, db_url, n)
        juhe_small = measure("juhe", Path(tmp) / str(small), db_url, small)
    for other in (previous, juhe):
        if baseline["counts"] != other["counts"]:
            print(f"MISMATCH: baseline {baseline['counts']} vs {other['design']} {other['counts']}", file=sys.stderr)
            return 1
    lps = {id(r): r["lines"] / r["seconds"] for r in (baseline, previous, juhe, juhe_small)}
    print(f"{'design':<22} {'lines':>10} {'seconds':>8} {'lines/s':>10} {'peak RSS MB':>12} {'PG backend MB':>14}")
    for name, r in (
        ("baseline (all in dicts)", baseline),
        ("previous (Py index)", previous),
        ("juhe (PostgreSQL)", juhe),
        ("juhe at N/10", juhe_small),
    ):
        pg = r.get("postgres_backend_peak_rss_mb")
        pg_text = f"{pg:>14,.1f}" if isinstance(pg, float | int) else f"{'-':>14}"
        print(
            f"{name:<23}{r['lines']:>10,} {r['seconds']:>8.2f} {lps[id(r)]:>10,.0f} {r['peak_rss_mb']:>12,.1f}{pg_text}"
        )
    print(
        f"juhe PostgreSQL temporary files: {juhe['postgres_temp_mb']:,} MB at N, {juhe_small['postgres_temp_mb']:,} MB"
        " at N/10 (joins beyond work_mem spill to disk, not to memory)"
    )
    print("PG backend MB = VmHWM of the backend that ran the join (includes the 128 MB shared buffers it touched)")
    print("outcomes:", json.dumps(juhe["counts"], sort_keys=True))
    base_lps, juhe_lps = lps[id(baseline)], lps[id(juhe)]
    print(
        json.dumps(
            {
                "lines": juhe["lines"],
                "baseline_lines_per_s": round(base_lps),
                "juhe_lines_per_s": round(juhe_lps),
                "ratio": round(juhe_lps / base_lps, 2),
                "peak_rss_mb": juhe["peak_rss_mb"],
                "small_lines": juhe_small["lines"],
                "small_peak_rss_mb": juhe_small["peak_rss_mb"],
                "postgres_backend_peak_rss_mb": juhe["postgres_backend_peak_rss_mb"],
                "small_postgres_backend_peak_rss_mb": juhe_small["postgres_backend_peak_rss_mb"],
                "previous_peak_rss_mb": previous["peak_rss_mb"],
                "previous_lines_per_s": round(lps[id(previous)]),
                "baseline_peak_rss_mb": baseline["peak_rss_mb"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
