"""`python -m services.migration.cli dry-run|run|status|finalise|reverse`: the migration tool for operators.

    python -m services.migration.cli dry-run --merchants m.csv --persons p.jsonl --balances b.csv --control c.csv
    python -m services.migration.cli run     --merchants m.csv --persons p.jsonl --balances b.csv --control c.csv
    python -m services.migration.cli status   mig_…
    python -m services.migration.cli finalise mig_…
    python -m services.migration.cli reverse  mig_…
    python -m services.migration.cli provision mig_… --credentials keys.jsonl --route alipay=ali_sp

Settings come from the service's environment (JUHE_MIGRATION_DATABASE_URL, JUHE_MIGRATION_LEDGER_URL,
JUHE_MIGRATION_PLATFORM, JUHE_MIGRATION_BATCH_ROWS) or the options below. `run` is also the resume command:
after a kill, the same command continues the same run from its checkpoint. Exit codes: 0 done (and, for
runs, reconciled), 1 done with differences or rejections, 2 refused (problem printed), 3 unreachable.
The report is printed as a table and written as JSON (`--report FILE`); a per-run log goes to
`--log FILE` (JSON lines, one per batch).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from libs.common.db import UnitOfWork, create_engine
from libs.common.errors import Problem
from services.migration.clients.platform import PlatformClient
from services.migration.config import Settings
from services.migration.context import build_migration_context
from services.migration.domain.errors import PROVISION_REFUSED
from services.migration.flows import provision
from services.migration.flows import runs as flow

EXIT_OK, EXIT_DIFFERENCES, EXIT_REFUSED, EXIT_UNAVAILABLE = 0, 1, 2, 3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m services.migration.cli", description=__doc__.split("\n")[0])
    p.add_argument("--database-url", help="the migration database (default: JUHE_MIGRATION_DATABASE_URL)")
    p.add_argument("--ledger-url", help="the ledger (default: JUHE_MIGRATION_LEDGER_URL)")
    p.add_argument("--marketing-url", help="marketing, for coupons (default: JUHE_MIGRATION_MARKETING_URL)")
    p.add_argument("--platform", help="the platform the run belongs to (default: JUHE_MIGRATION_PLATFORM)")
    p.add_argument("--batch-rows", type=int, help="rows per batch (1-1000)")
    p.add_argument("--report", type=Path, help="write the report as JSON to this file")
    p.add_argument("--log", type=Path, help="append the per-run log (JSON lines) to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    commands = p.add_subparsers(dest="command", required=True)
    for name in ("dry-run", "run"):
        c = commands.add_parser(name, help="validate only" if name == "dry-run" else "migrate (or resume)")
        for kind in ("merchants", "persons", "balances", "coupons", "control"):
            c.add_argument(f"--{kind}", type=Path, help=f"the {kind} file (.csv or .jsonl; control: .csv)")
        c.add_argument("--encoding", choices=("auto", "utf-8", "gbk"), default="auto")
    for name in ("status", "finalise", "reverse"):
        commands.add_parser(name).add_argument("run_id")
    c = commands.add_parser("provision", help="gateway keys and routing contracts of a finalised run's merchants")
    c.add_argument("run_id")
    c.add_argument("--credentials", type=Path, required=True, help="append the new API keys here (JSON lines, 0600)")
    c.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="CHANNEL=ROUTE_ID",
        help="a contract on this route for each merchant with that channel's sub-merchant id",
    )
    return p


def peak_rss_kib() -> int | None:
    """This process's own peak resident memory (Linux `VmHWM`), None where there is no /proc. Not getrusage:
    the kernel starts a process's `ru_maxrss` from the resident size of the process it was spawned from (the
    mm it had before exec), so a large parent — the benchmark holding a million persons' expected balances —
    made the CLI look like it had grown."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)


class RunLog:
    """The per-run log: one JSON line per progress step, so an operator can see what happened when (and how
    much memory the process has needed so far: `peak_rss_kib`)."""

    def __init__(self, path: Path | None) -> None:
        self._file = path.open("a", encoding="utf-8") if path else None

    def write(self, **fields: Any) -> None:
        if self._file is not None:
            line = {"time": time.time(), **fields, "peak_rss_kib": peak_rss_kib()}
            self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    overrides = {
        k: v
        for k, v in {
            "database_url": args.database_url,
            "ledger_url": args.ledger_url,
            "marketing_url": args.marketing_url,
            "platform": args.platform,
            "batch_rows": args.batch_rows,
        }.items()
        if v
    }
    settings = Settings(**overrides)
    console = Console(stderr=True)
    engine = create_engine(settings.database_url, pool_size=2, max_overflow=2)
    context = build_migration_context(settings)  # the service's own clients, built the same way
    m = context.migration(UnitOfWork(engine, source="migration"), settings.platform)
    log = RunLog(args.log)
    try:
        return await _command(m, args, console, log)
    except Problem as exc:
        console.print(f"[red]{exc.spec.code}[/red]: {exc.detail}")
        log.write(event="refused", code=exc.spec.code, detail=exc.detail)
        return EXIT_UNAVAILABLE if exc.spec.retryable else EXIT_REFUSED
    finally:
        log.close()
        await context.aclose()
        await engine.dispose()


async def _command(m: flow.Migration, args: argparse.Namespace, console: Console, log: RunLog) -> int:
    if args.command in ("dry-run", "run"):
        files = flow.RunFiles(
            args.merchants, args.persons, args.balances, args.control, args.encoding, coupons=args.coupons
        )
        with _progress(console, args.quiet) as bar:
            tasks: dict[str, TaskID] = {}

            def on_progress(kind: str, total: int, done: int) -> None:
                if kind not in tasks:
                    tasks[kind] = bar.add_task(kind, total=total or None, completed=done)
                bar.update(tasks[kind], completed=done)
                log.write(event="progress", kind=kind, done=done, total=total)

            run_id = await flow.start(m, files, dry_run=args.command == "dry-run", progress=on_progress)
        log.write(event="run_ended", run_id=run_id)
    elif args.command == "finalise":
        run_id = args.run_id
        await flow.finalise(m, run_id)
        log.write(event="finalised", run_id=run_id)
    elif args.command == "reverse":
        run_id = args.run_id
        await flow.reverse(m, run_id)
        log.write(event="reversed", run_id=run_id)
    elif args.command == "provision":
        return await _provision(m, args, console, log)
    else:
        run_id = args.run_id
    run, report = await flow.report_of(m, run_id)
    _print(console, run, report)
    if args.report:
        args.report.write_text(json.dumps({"status": run["status"], **report}, ensure_ascii=False, indent=2))
    summary = {
        "run_id": run_id,
        "status": run["status"],
        "mode": run["mode"],
        "reconciled": report["reconciled"],
        "rejected": sum(report["rejections"].values()),
    }
    print(json.dumps(summary))
    return EXIT_OK if report["reconciled"] else EXIT_DIFFERENCES


async def _provision(m: flow.Migration, args: argparse.Namespace, console: Console, log: RunLog) -> int:
    settings = Settings()
    if settings.platform_key is None:
        raise Problem(PROVISION_REFUSED, "set JUHE_MIGRATION_PLATFORM_KEY (the platform's admin key)")
    routes: dict[str, str] = {}
    for spec in args.route:
        channel, _, route_id = str(spec).partition("=")
        if not route_id:
            raise Problem(PROVISION_REFUSED, f"--route {spec}: expected CHANNEL=ROUTE_ID")
        routes[channel] = route_id
    platform = PlatformClient(
        settings.gateway_url, settings.platform_key.get_secret_value(), timeout_seconds=settings.ledger_timeout_seconds
    )
    try:
        result = await provision.provision(m, platform, args.run_id, routes=routes, credentials=args.credentials)
    finally:
        await platform.close()
    log.write(event="provisioned", **result)
    created, existing = result["contracts_created"], result["contracts_existing"]
    live, test = result["keys_issued"], result["test_keys_issued"]
    console.print(
        f"{result['merchants']} merchants: {live} live and {test} test keys issued ({args.credentials}), "
        f"contracts: {created} created, {existing} existing"
    )
    for conflict in result["conflicts"]:
        console.print(f"  [yellow]conflict[/yellow]: {conflict}")
    print(json.dumps(result))
    return EXIT_DIFFERENCES if result["conflicts"] else EXIT_OK


class RateColumn(ProgressColumn):
    """Rows per second (rich's speed columns speak bytes)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:>9,.0f} rows/s")


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    )


def _print(console: Console, run: Any, report: dict[str, Any]) -> None:
    console.print(f"run [bold]{run['id']}[/bold] ({run['mode']}): {run['status']}")
    rows = Table("kind", "read", "written/valid", "skipped", "rejected", "reversed", title="rows")
    for kind, c in report["rows"].items():
        rows.add_row(
            kind,
            *(str(c.get(k, 0)) for k in ("read",)),
            str(c.get("written", 0) + c.get("valid", 0)),
            str(c.get("skipped", 0)),
            str(c.get("rejected", 0)),
            str(c.get("reversed", 0)),
        )
    console.print(rows)
    money = Table("currency", "file rows", "file Σ", "written Σ", "control Σ", "suspense", title="money (minor units)")
    for currency, m in report["money"].items():
        money.add_row(
            currency,
            *(
                str(m.get(k, ""))
                for k in ("file_rows", "file_minor", "written_minor", "control_minor", "suspense_minor")
            ),
        )
    console.print(money)
    for reason, n in report["rejections"].items():
        console.print(f"  rejected {reason}: {n}")
    for line in report["differences"]:
        console.print(f"  [yellow]difference[/yellow]: {line}")
    sample = report.get("sample") or {}
    if sample.get("checked"):
        console.print(f"  sample read back: {sample['checked']} holders, {len(sample['mismatches'])} mismatches")


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
