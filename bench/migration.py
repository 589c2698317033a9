"""Migration benchmark: persons with opening balances, one by one through the public API vs the migration tool.

    python -m bench.migration [--quick] [--persons N] [--baseline-persons N]

Data: `--persons` persons (default 20,000; `--quick` 2,000; the issue's full size is `--persons 1000000`),
generated deterministically (services/migration/tests/generate.py), each with a balance and every fifth with
points, plus the control file. No merchants (the baseline would need the prepaid-card flow).

1. baseline  a real ledger process on its own database; the same rows, one request per row through the
             public API: `POST /v1/wallet/holders` per person, `GET …/my-wallet` for its sub-accounts,
             `POST /v1/transfers` (Dr suspense, Cr sub-account) per balance; 8 concurrent clients. Measured on
             the first `--baseline-persons` persons (default 1,000) of the same files: rows/s.
2. juhe      `python -m services.migration.cli run` (a real process, its peak RSS from its run log) against a
             second ledger process on a fresh database: all rows; then the last person read back through
             the wallet API (`time_to_readable_s`: start of the run → last person readable).

Both ledgers are checked with `services.ledger.verify`, the run must be reconciled (suspense 0). The last
line is the JSON the conventions ask for; the load average is printed (the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from libs.common.embedded import create_database, database_url, postgres_server
from libs.common.migrations import upgrade
from libs.common.services import REPO_ROOT, SERVICES
from libs.common.testing.infra import ServiceProcess
from services.ledger.verify import verify
from services.migration.domain.rows import Kind, juhe_holder_id
from services.migration.flows import sources
from services.migration.tests import generate as g

BASELINE_CLIENTS = 8


def ledger_server(url: str, log_dir: Path) -> ServiceProcess:
    settings = {"database_url": url, "role": "api", "log_level": "WARNING"}
    return ServiceProcess(SERVICES["ledger"], settings, log_dir=log_dir, ready_path="/livez")


async def prepared_database(server_url: str, service: str) -> str:
    name = f"bench_{service}_{uuid.uuid4().hex[:8]}"
    for attempt in itertools.count():  # the embedded server may accept TCP before sessions
        try:
            await create_database(server_url, name)
            break
        except Exception:
            if attempt > 50:
                raise
            await asyncio.sleep(0.2)
    url = database_url(server_url, name)
    await asyncio.to_thread(upgrade, SERVICES[service].migrations_dir, url)
    return url


# --- baseline: one request per row through the public API ----------------------------------------------
async def baseline(base_url: str, data: g.Dataset, persons_max: int) -> tuple[int, float]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        suspense: dict[str, str] = {}
        for currency in ("CNY",):  # points: the public API credits them with a points grant
            body = {
                "holder_id": "migration:baseline",
                "currency": currency,
                "kind": "migration_suspense",
                "code": "2901",
            }
            r = await client.post("/v1/accounts", json=body)
            assert r.status_code in (200, 201), r.text
            suspense[currency] = r.json()["id"]
        persons = [raw for _, raw in itertools.islice(sources.records(sources.inspect(data.persons)), persons_max)]
        wanted = {str(p["source_id"]) for p in persons if p}
        balances: dict[str, list[dict[str, Any]]] = {}
        for _, raw in sources.records(sources.inspect(data.balances)):
            if raw and raw["person_source_id"] in wanted:
                balances.setdefault(str(raw["person_source_id"]), []).append(raw)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for p in persons:
            if p:
                queue.put_nowait(p)
        rows = 0

        async def worker() -> None:
            nonlocal rows
            while not queue.empty():
                p = queue.get_nowait()
                holder_id = f"usr_base_{p['source_id']}"
                body = {
                    "holder_id": holder_id,
                    "holder_type": "person",
                    "name": p["name"],
                    "resident_id": p["resident_id"],
                    "phone": p["phone"],
                    **({"bank_card": p["bank_card"]} if p["bank_card"] else {}),
                }
                r = await client.post("/v1/wallet/holders", json=body)
                assert r.status_code in (200, 201), r.text
                rows += 1
                wallet = (await client.get(f"/v1/wallet/holders/{holder_id}/my-wallet")).json()
                accounts = {(s["subaccount_type"], s["currency"]): s["account_id"] for s in wallet["subaccounts"]}
                for b in balances.get(str(p["source_id"]), []):
                    amount = int(b["amount_minor"])
                    if amount and b["subaccount"] == "points":
                        body = {"grant_id": f"opening:{b['source_id']}", "points": amount}
                        r = await client.post(f"/v1/wallet/holders/{holder_id}/points/grants", json=body)
                        assert r.status_code in (200, 201), r.text
                    elif amount:
                        currency = b["currency"]
                        target = accounts[(b["subaccount"], currency)]
                        body = {
                            "source": "baseline",
                            "idempotency_key": f"opening:{b['source_id']}",
                            "postings": [
                                {
                                    "account_id": suspense[currency],
                                    "direction": "debit",
                                    "amount_minor": amount,
                                    "currency": currency,
                                },
                                {
                                    "account_id": target,
                                    "direction": "credit",
                                    "amount_minor": amount,
                                    "currency": currency,
                                },
                            ],
                        }
                        r = await client.post("/v1/transfers", json=body)
                        assert r.status_code in (200, 201), r.text
                    rows += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(BASELINE_CLIENTS)))
        return rows, time.perf_counter() - started


# --- juhe: the migration CLI as a process --------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (Linux /proc): where the run's time goes, CLI vs ledger."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def migrate(
    ledger_url: str, migration_db: str, data: g.Dataset, run_log: Path, profile: Path | None = None
) -> tuple[int, float, int, dict[str, Any]]:
    """Returns (exit code, seconds, peak RSS in KiB of the CLI process, its summary line); `profile`: run the
    CLI under cProfile and write its statistics there (to find the hot path)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "JUHE_MIGRATION_DATABASE_URL": migration_db,
        "JUHE_MIGRATION_LEDGER_URL": ledger_url,
        "JUHE_MIGRATION_PLATFORM": "bench",
    }
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    args = [
        sys.executable,
        *profiler,
        "-m",
        "services.migration.cli",
        "--quiet",
        "--log",
        str(run_log),
        "run",
        "--persons",
        str(data.persons),
        "--balances",
        str(data.balances),
        "--control",
        str(data.control),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # children waited for so far: initdb (~0.6 s CPU)
    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli_cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    print(f"CPU of the migration CLI: {cli_cpu:.1f}s")
    lines = out.decode().strip().splitlines()
    events = [json.loads(line) for line in run_log.read_text().splitlines()]
    # The CLI's own peak (VmHWM), from its log: the kernel's ru_maxrss of a child starts from this process's
    # resident size when it spawned it (a million persons' `data.expected` alone is ~200 MiB).
    rss_kib = max((int(e.get("peak_rss_kib") or 0) for e in events), default=0)
    if events:  # without the process's start-up (imports take seconds on a loaded machine)
        print(f"juhe run itself (first batch → end, from its log): {events[-1]['time'] - events[0]['time']:.1f}s")
    if proc.returncode != 0:
        print(err.decode()[-2000:])
    return proc.returncode, seconds, rss_kib, json.loads(lines[-1]) if lines else {}


async def readable(base_url: str, holder_id: str) -> bool:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        r = await client.get(f"/v1/wallet/holders/{holder_id}/my-wallet")
        return r.status_code == 200


async def run(args: argparse.Namespace) -> dict[str, Any]:
    persons = args.persons or (2_000 if args.quick else 20_000)
    baseline_persons = min(args.baseline_persons or (300 if args.quick else 1_000), persons)
    load_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="juhe-bench-migration-"))
    infrastructure = contextlib.ExitStack()
    server_url = infrastructure.enter_context(postgres_server(tmp))
    servers: list[ServiceProcess] = []
    try:
        t0 = time.perf_counter()
        data = await asyncio.to_thread(g.clean_dataset, tmp / "files", base=1_000_000, merchants=0, persons=persons)
        records = persons + data.balance_rows
        print(f"data: {persons:,} persons, {data.balance_rows:,} balance rows ({time.perf_counter() - t0:.1f}s)")
        ledger_base_db = await prepared_database(server_url, "ledger")
        ledger_juhe_db = await prepared_database(server_url, "ledger")
        migration_db = await prepared_database(server_url, "migration")
        base_ledger, juhe_ledger = (
            ledger_server(ledger_base_db, tmp / "logs"),
            ledger_server(ledger_juhe_db, tmp / "logs"),
        )
        servers += [base_ledger, juhe_ledger]
        for server in servers:  # generous: on a shared machine a start can take a minute
            server.start(wait_ready=False)
            await asyncio.to_thread(server.wait_ready, 300)

        baseline_rps = 0.0
        if not args.no_baseline:
            base_rows, base_s = await baseline(base_ledger.base_url, data, baseline_persons)
            baseline_rps = base_rows / base_s
            print(
                f"baseline: {base_rows:,} rows one by one through the API in {base_s:.1f}s = {baseline_rps:,.0f} rows/s"
            )

        run_started = time.perf_counter()
        assert juhe_ledger.process is not None
        ledger_cpu = cpu_seconds(juhe_ledger.process.pid)
        code, juhe_s, rss_kib, summary = await asyncio.to_thread(
            migrate, juhe_ledger.base_url, migration_db, data, args.run_log or tmp / "migration-run.log", args.profile
        )
        print(f"CPU of the ledger during the run: {cpu_seconds(juhe_ledger.process.pid) - ledger_cpu:.1f}s")
        last = juhe_holder_id("bench", Kind.PERSONS, f"P{1_000_000 + persons - 1}")
        ok_readable = await readable(juhe_ledger.base_url, last)  # writes are synchronous: readable at the end
        time_to_readable = time.perf_counter() - run_started
        juhe_rps = records / juhe_s
        print(
            f"juhe: {records:,} rows through the migration tool in {juhe_s:.1f}s = {juhe_rps:,.0f} rows/s,"
            f" peak RSS {rss_kib / 1024:.0f} MiB, exit {code}, {summary}"
        )

        violations = {}
        for url in (ledger_base_db, ledger_juhe_db):
            violations.update(await verify(url))
        for name, rows in violations.items():
            print(f"VIOLATION {name}: {rows[:3]}")
        invariants_ok = not violations and code == 0 and bool(summary.get("reconciled")) and ok_readable
        ratio = juhe_rps / baseline_rps if baseline_rps else 0.0
        load_end = os.getloadavg()[0]
        print()
        print(f"{'design':<52}{'rows/s':>12}{'vs baseline':>14}")
        print(f"{'baseline (one request per row, public API)':<52}{baseline_rps:>12,.0f}{1:>13.1f}x")
        print(f"{'juhe migration (batched, resumable, reconciled)':<52}{juhe_rps:>12,.0f}{ratio:>13.1f}x")
        print(
            f"verify: {'ok' if not violations else 'FAILED'}; run reconciled: {summary.get('reconciled')};"
            f" last person readable: {ok_readable}; peak RSS of the CLI: {rss_kib / 1024:.0f} MiB"
        )
        print(f"load average (1 min) {load_start:.2f} at start, {load_end:.2f} at end, {os.cpu_count()} CPUs")
        return {
            "persons": persons,
            "rows": records,
            "baseline_rows_per_s": round(baseline_rps),
            "juhe_rows_per_s": round(juhe_rps),
            "ratio": round(ratio, 1),
            "peak_rss_mib": round(rss_kib / 1024),
            "time_to_readable_s": round(time_to_readable, 1),
            "invariants_ok": invariants_ok,
            "load_avg_1m": [round(load_start, 2), round(load_end, 2)],
        }
    finally:
        for server in servers:
            server.stop()
        infrastructure.close()
        shutil.rmtree(tmp, ignore_errors=True)  # the databases of a 1M run are gigabytes


def main() -> int:
    parser = argparse.ArgumentParser(description="Migration benchmark")
    parser.add_argument("--quick", action="store_true", help="2,000 persons (under a minute on an idle machine)")
    parser.add_argument("--persons", type=int, default=None, help="persons to migrate (default 20,000)")
    parser.add_argument("--baseline-persons", type=int, default=None, help="persons through the API one by one")
    parser.add_argument("--no-baseline", action="store_true", help="only the migration tool (the 1M run)")
    parser.add_argument("--run-log", type=Path, default=None, help="keep the run's JSON-lines log (progress) here")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile statistics of the CLI to this file")
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result))
    return 0 if result["invariants_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
