"""Reconciliation benchmark: a naive load-everything matcher vs Juhe's streaming matcher, in one run.

    python -m bench.reconciliation [--quick] [--lines N]

Workload: a generated channel bill of N lines (default 1,000,000; `--quick` 100,000) as NDJSON, the
exact wire format the cashier's `GET /v1/internal/bills/...` streams to settlement, and Juhe's matching
records of that day. About 0.1 % of lines are made to disagree (amount, fee, status), 0.05 % are
missing from the bill and 0.05 % are missing from Juhe, so every outcome is exercised.

The bill and the records are written to files first (not timed): both designs then read the same bytes.

1. baseline   reads the whole bill into a list of dicts (`json.loads` per line) and all records into a
              dict of dicts, then matches by out_trade_no with a channel_trade_no fallback.
2. juhe       settlement's real code: `flows.cashier.line_from_json` per line as it is read and
              `domain.reconciliation.Matcher` over the day's records; the bill is never held.

Each design runs in its own child process so its peak RSS (ru_maxrss) is its own. Both must classify
every line identically (the run fails otherwise). The last line is the JSON the issue asks for.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.settlement.domain.reconciliation import Matcher, Outcome, Record
from services.settlement.flows.cashier import line_from_json

LINES_FULL = 1_000_000
LINES_QUICK = 100_000
FEE_RATE_BPS = 60


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


def run_juhe(bill_path: Path, records_path: Path) -> Counter[str]:
    matcher = Matcher(read_records(records_path))
    counts: Counter[str] = Counter()
    with bill_path.open("rb") as f:
        for raw in f:
            counts[matcher.match(line_from_json(raw)).outcome.value] += 1
    for result in matcher.leftovers():
        counts[result.outcome.value] += 1
    return counts


def child(design: str, directory: Path) -> None:
    paths = (directory / "bill.ndjson", directory / "records.ndjson")
    started = time.perf_counter()
    counts = run_baseline(*paths) if design == "baseline" else run_juhe(*paths)
    seconds = time.perf_counter() - started
    bill_lines = sum(v for k, v in counts.items() if k != Outcome.MISSING_AT_CHANNEL.value)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "design": design,
                "lines": bill_lines,
                "seconds": seconds,
                "counts": dict(counts),
                "peak_rss_mb": round(peak_rss_mb, 1),
            }
        )
    )


def measure(design: str, directory: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.reconciliation", "--child", design, "--dir", str(directory)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{LINES_QUICK:,} lines")
    parser.add_argument("--lines", type=int, default=None)
    parser.add_argument("--child", choices=["baseline", "juhe"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.lines or (LINES_QUICK if args.quick else LINES_FULL)
    if args.child:
        child(args.child, Path(args.dir))
        return 0
    with tempfile.TemporaryDirectory(prefix="juhe-bench-recon-") as tmp:
        write_inputs(n, Path(tmp))
        baseline = measure("baseline", Path(tmp))
        juhe = measure("juhe", Path(tmp))
    if baseline["counts"] != juhe["counts"]:
        print(f"MISMATCH: baseline {baseline['counts']} vs juhe {juhe['counts']}", file=sys.stderr)
        return 1
    base_lps = baseline["lines"] / baseline["seconds"]
    juhe_lps = juhe["lines"] / juhe["seconds"]
    print(f"{'design':<10} {'lines':>10} {'seconds':>8} {'lines/s':>10} {'peak RSS MB':>12}")
    for name, r, lps in (("baseline", baseline, base_lps), ("juhe", juhe, juhe_lps)):
        print(f"{name:<10} {r['lines']:>10,} {r['seconds']:>8.2f} {lps:>10,.0f} {r['peak_rss_mb']:>12,.1f}")
    print("outcomes:", json.dumps(juhe["counts"], sort_keys=True))
    print(
        json.dumps(
            {
                "lines": juhe["lines"],
                "baseline_lines_per_s": round(base_lps),
                "juhe_lines_per_s": round(juhe_lps),
                "ratio": round(juhe_lps / base_lps, 2),
                "peak_rss_mb": juhe["peak_rss_mb"],
                "baseline_peak_rss_mb": baseline["peak_rss_mb"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
