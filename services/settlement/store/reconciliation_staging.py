"""Reconciliation in PostgreSQL: the bill is COPYed into a temporary table and classified by set-based SQL.

Why: indexing the day's own records in a Python dict costs ≈ 0.9 KB per record (915 MB at a million),
so memory grew with the day. Here the bill streams into `rcn_line` with binary COPY (asyncpg, back-
pressured: Python holds one COPY buffer, never the bill), Juhe's records of the day are copied inside
the database into `rcn_rec`, and hash joins do the matching. Temporary tables live in the session's
local buffers and spill to disk; the joins are bounded by `work_mem`. Items are written by
`INSERT … SELECT` without passing through Python. Everything sits in one transaction and every table
is `ON COMMIT DROP`, so a failed run leaves nothing behind, on a pooled connection too.

The rules are `domain/reconciliation.py`'s, in SQL: `classify` is the CASE below, and `Matcher`'s
"by (kind, key), else a payment line by its channel trade number, each record once, in bill order" is
done set-based for every line that is the only one able to reach its records (nearly all of them), and
by a sequential loop in bill order (`_RESOLVE_TANGLED`) for lines that compete for a record (a line
billed twice, a channel number pointing at a record another line has by key). The equivalence is
tested against `Matcher` on generated days with every such case
(tests/integration/test_reconciliation_staging.py).

Juhe's own keys are unique in practice (an out_trade_no per attempt, a refund id per refund); should two
records ever share one, the first staged is kept, as the Python index kept one.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.settlement.domain.reconciliation import (
    MISSING_AT_CHANNEL_DETAIL,
    MISSING_IN_JUHE_DETAIL,
    Outcome,
    Resolution,
)

# Memory for each hash join/aggregate of the classification (PostgreSQL spills to disk beyond it):
# fixed, whatever the bill size.
WORK_MEM = "64MB"

LINE_COLUMNS = ("seq", "kind", "key", "ch_no", "amount_minor", "fee_minor", "status", "channel_ok")
"""The staged bill line: `seq` is its place in the bill (the matcher's order), `channel_ok` is
`domain.channel_says_succeeded(line)` computed in Python at COPY time, so the channel's words stay
interpreted in one place."""

_CREATE = (
    f"SET LOCAL work_mem = '{WORK_MEM}'",
    """CREATE TEMP TABLE rcn_line (seq bigint NOT NULL, kind text NOT NULL, key text NOT NULL,
         ch_no text NOT NULL, amount_minor bigint NOT NULL, fee_minor bigint NOT NULL, status text NOT NULL,
         channel_ok boolean NOT NULL) ON COMMIT DROP""",
    """CREATE TEMP TABLE rcn_rec (rid bigint GENERATED ALWAYS AS IDENTITY, kind text NOT NULL,
         key text NOT NULL, ch_no text, payment_id text NOT NULL, refund_id text, merchant_order_no text,
         amount_minor bigint NOT NULL, fee_minor bigint, status text NOT NULL, UNIQUE (kind, key)) ON COMMIT DROP""",
)

# Juhe's records of the day, as `flows.reconcile` used to load them (payment key: out_trade_no, else the
# payment id; refund key: the refund id).
_STAGE_RECORDS = """
INSERT INTO rcn_rec (kind, key, ch_no, payment_id, refund_id, merchant_order_no, amount_minor, fee_minor, status)
SELECT 'payment', coalesce(nullif(p.out_trade_no, ''), p.payment_id), p.channel_trade_no, p.payment_id, NULL,
       p.merchant_order_no, p.amount_minor, p.channel_fee_minor, p.status
  FROM payment_records p
 WHERE p.channel = :channel AND p.bill_date = :bill_date AND p.merchant_id = :merchant_id
UNION ALL
SELECT 'refund', r.refund_id, r.channel_refund_no, r.payment_id, r.refund_id, p.merchant_order_no,
       r.amount_minor, NULL, r.status
  FROM refund_records r JOIN payment_records p ON p.payment_id = r.payment_id
 WHERE r.channel = :channel AND r.bill_date = :bill_date AND r.merchant_id = :merchant_id
ON CONFLICT (kind, key) DO NOTHING
"""

# Which records each line can reach: its own key, and (a payment line with a channel number) the record
# the channel number points at. `rid` is the record it meets when nothing competes for it.
_PAIR = (
    "ANALYZE rcn_line",
    "ANALYZE rcn_rec",
    """CREATE TEMP TABLE rcn_ch ON COMMIT DROP AS
         SELECT ch_no, max(rid) AS rid FROM rcn_rec WHERE kind = 'payment' AND ch_no <> '' GROUP BY ch_no""",
    """CREATE TEMP TABLE rcn_pair ON COMMIT DROP AS
         SELECT l.seq, k.rid AS key_rid, c.rid AS ch_rid, coalesce(k.rid, c.rid) AS rid
           FROM rcn_line l
           LEFT JOIN rcn_rec k ON k.kind = l.kind AND k.key = l.key
           LEFT JOIN rcn_ch c ON l.kind = 'payment' AND l.ch_no <> '' AND c.ch_no = l.ch_no""",
    # records two or more lines can reach (a line counts once even if both its ways lead there)
    """CREATE TEMP TABLE rcn_contended ON COMMIT DROP AS
         SELECT rid FROM (SELECT key_rid AS rid FROM rcn_pair WHERE key_rid IS NOT NULL
                          UNION ALL
                          SELECT ch_rid FROM rcn_pair WHERE ch_rid IS NOT NULL AND ch_rid IS DISTINCT FROM key_rid
                         ) AS reach
          GROUP BY rid HAVING count(*) > 1""",
)

# Lines reaching a contended record are decided one at a time in bill order, exactly as the matcher
# pops its index. Records only they can reach are untouched by every other line, so deciding them apart
# from the set-based rest is exact.
_RESOLVE_TANGLED = """
DO $$
DECLARE
  l record;
  taken bigint;
BEGIN
  CREATE TEMP TABLE rcn_taken (rid bigint PRIMARY KEY) ON COMMIT DROP;
  CREATE TEMP TABLE rcn_tangled (seq bigint PRIMARY KEY, rid bigint) ON COMMIT DROP;
  FOR l IN SELECT p.seq, p.key_rid, p.ch_rid FROM rcn_pair p
            WHERE p.key_rid IN (SELECT rid FROM rcn_contended) OR p.ch_rid IN (SELECT rid FROM rcn_contended)
            ORDER BY p.seq
  LOOP
    taken := NULL;
    IF l.key_rid IS NOT NULL THEN
      INSERT INTO rcn_taken VALUES (l.key_rid) ON CONFLICT DO NOTHING RETURNING rid INTO taken;
    END IF;
    IF taken IS NULL AND l.ch_rid IS NOT NULL THEN
      INSERT INTO rcn_taken VALUES (l.ch_rid) ON CONFLICT DO NOTHING RETURNING rid INTO taken;
    END IF;
    INSERT INTO rcn_tangled VALUES (l.seq, taken);
  END LOOP;
  UPDATE rcn_pair p SET rid = t.rid FROM rcn_tangled t WHERE t.seq = p.seq AND p.rid IS DISTINCT FROM t.rid;
END $$
"""

# `domain.classify` as one CASE per column; then the records no line met (`Matcher.leftovers`).
_OUTCOME = f"""CASE
    WHEN r.rid IS NULL THEN '{Outcome.MISSING_IN_JUHE}'
    WHEN (r.status = 'succeeded') <> l.channel_ok THEN '{Outcome.STATUS_MISMATCH}'
    WHEN r.amount_minor <> l.amount_minor THEN '{Outcome.AMOUNT_MISMATCH}'
    WHEN r.fee_minor IS NOT NULL AND r.kind = 'payment' AND r.fee_minor <> l.fee_minor THEN '{Outcome.FEE_MISMATCH}'
    ELSE '{Outcome.MATCHED}' END"""
_CLASSIFIED = f"""
WITH cls AS MATERIALIZED (
  SELECT 0 AS part, l.seq AS ord, {_OUTCOME} AS outcome, l.kind, l.key, l.ch_no AS line_ch_no,
         l.amount_minor AS l_amount, l.fee_minor AS l_fee, l.status AS l_status, l.channel_ok,
         r.kind AS r_kind, r.payment_id, r.refund_id, r.merchant_order_no, r.amount_minor AS r_amount,
         r.fee_minor AS r_fee, r.status AS r_status
    FROM rcn_line l JOIN rcn_pair p ON p.seq = l.seq LEFT JOIN rcn_rec r ON r.rid = p.rid
), left_over AS (
  SELECT 1 AS part, r.rid AS ord, r.kind, r.key, r.ch_no, r.payment_id, r.refund_id, r.merchant_order_no,
         r.amount_minor, r.fee_minor, r.status
    FROM rcn_rec r
   WHERE r.status = 'succeeded' AND NOT EXISTS (SELECT 1 FROM rcn_pair p WHERE p.rid = r.rid)
), items AS (
  INSERT INTO reconciliation_items (run_id, outcome, resolution, resolution_status, kind, key, payment_id,
         refund_id, merchant_order_no, channel_trade_no, juhe_amount_minor, channel_amount_minor, juhe_fee_minor,
         channel_fee_minor, juhe_status, channel_status, detail)
  SELECT :run_id, outcome, resolution, 'open', kind, key, payment_id, refund_id, merchant_order_no,
         channel_trade_no, juhe_amount_minor, channel_amount_minor, juhe_fee_minor, channel_fee_minor,
         juhe_status, channel_status, detail
    FROM (
      SELECT part, ord, outcome,
             CASE WHEN outcome = '{Outcome.STATUS_MISMATCH}' AND channel_ok AND r_kind = 'payment'
                  THEN '{Resolution.CASHIER_REQUERY}' ELSE '{Resolution.MANUAL}' END AS resolution,
             kind, key, payment_id, refund_id, merchant_order_no, line_ch_no AS channel_trade_no,
             r_amount AS juhe_amount_minor, l_amount AS channel_amount_minor, r_fee AS juhe_fee_minor,
             l_fee AS channel_fee_minor, r_status AS juhe_status, l_status AS channel_status,
             CASE outcome
               WHEN '{Outcome.MISSING_IN_JUHE}' THEN '{MISSING_IN_JUHE_DETAIL}'
               WHEN '{Outcome.STATUS_MISMATCH}' THEN format('Juhe %s, channel %s', r_status, l_status)
               WHEN '{Outcome.AMOUNT_MISMATCH}' THEN format('Juhe %s, channel %s', r_amount, l_amount)
               ELSE format('expected fee %s, channel charged %s', r_fee, l_fee) END AS detail
        FROM cls WHERE outcome <> '{Outcome.MATCHED}'
      UNION ALL
      SELECT part, ord, '{Outcome.MISSING_AT_CHANNEL}', '{Resolution.MANUAL}', kind, key, payment_id, refund_id,
             merchant_order_no, ch_no, amount_minor, NULL, fee_minor, NULL, status, NULL, '{MISSING_AT_CHANNEL_DETAIL}'
        FROM left_over
    ) AS out
   ORDER BY part, ord
)
SELECT outcome, count(*) AS n FROM cls GROUP BY outcome
UNION ALL
SELECT '{Outcome.MISSING_AT_CHANNEL}', count(*) FROM left_over HAVING count(*) > 0
"""


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under SQLAlchemy's, inside the same transaction (COPY is asyncpg's)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def stage(conn: AsyncConnection, *, channel: str, merchant_id: str, bill_date: date) -> None:
    """Create this transaction's staging tables and copy Juhe's records of the day into them."""
    for statement in _CREATE:
        await conn.execute(text(statement))
    await conn.execute(text(_STAGE_RECORDS), {"channel": channel, "bill_date": bill_date, "merchant_id": merchant_id})


async def copy_lines(conn: AsyncConnection, rows: AsyncIterable[tuple[Any, ...]]) -> None:
    """Stream bill lines (tuples in `LINE_COLUMNS` order) into `rcn_line` with one binary COPY; asyncpg
    pulls from `rows` as its send buffer drains, so no more than one buffer is ever held."""
    driver = await _driver(conn)
    await driver.copy_records_to_table("rcn_line", records=rows, columns=list(LINE_COLUMNS))


async def classify(conn: AsyncConnection, run_id: str) -> dict[str, int]:
    """Match the staged bill against the staged records, write every non-matched outcome as an item of
    `run_id` (bill order, then the records the bill never mentioned) and return the counts per outcome."""
    for statement in _PAIR:
        await conn.execute(text(statement))
    if await conn.scalar(text("SELECT EXISTS (SELECT 1 FROM rcn_contended)")):
        await conn.execute(text(_RESOLVE_TANGLED))
    rows = await conn.execute(text(_CLASSIFIED), {"run_id": run_id})
    return {str(outcome): int(n) for outcome, n in rows}
