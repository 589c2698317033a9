"""The bank sandbox's daily payout statement (`GET /v1/statements/{yyyy-mm-dd}`, CSV): what the bank's
statement file is to reconciliation. The payouts it lists are `sandbox.py`'s.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

from sandboxes.bank.sandbox import CHINA, PAYOUTS, Bank

STATEMENT_COLUMNS = (
    "payout_no",
    "bank_ref",
    "account_no",
    "amount_minor",
    "currency",
    "status",
    "failure_code",
    "finished_at",
)


def statement_csv(bank: Bank, client_id: str, day: date) -> str:
    """Payouts of this client finished on `day` (China time), oldest first, plus a summary line."""
    rows: list[dict[str, Any]] = []
    for payout in bank.store.list(PAYOUTS):
        if payout["client_id"] != client_id or not payout["finished_at"]:
            continue
        if datetime.fromisoformat(payout["finished_at"]).astimezone(CHINA).date() == day:
            rows.append(payout)
    rows.sort(key=lambda p: p["finished_at"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(STATEMENT_COLUMNS)
    for p in rows:
        writer.writerow(["" if p.get(c) is None else p[c] for c in STATEMENT_COLUMNS])
    paid = sum(int(p["amount_minor"]) for p in rows if p["status"] == "SUCCEEDED")
    writer.writerow([f"# total={len(rows)}", f"succeeded_minor={paid}"])
    return out.getvalue()
