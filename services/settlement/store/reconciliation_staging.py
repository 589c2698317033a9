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

Juhe's own keys are unique by construction (an out_trade_no per attempt, a refund id per refund). Should
two records ever share one, one of them is used, as the Python index kept one (which one depended on row
order there too); the equivalence above is for unique keys.
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
)

# Juhe's records of the day, as `flows.reconcile` used to load them (payment key: out_trade_no, else the
# payment id; refund key: the refund id). `rid` numbers them for the joins. The amount is what the channel
# settles, the figure its bill prints (WeChat 应结订单金额 / 退款金额, Alipay 商家实收): a payment's amount less
# what its merchant-funded channel coupons left unsettled (entry `<pay>:unsettled`, docs/ledger.md §3.15), a
# refund's less the share of it the channel gave back as the coupon (`<re>:unsettled`).
_STAGE_RECORDS = """
CREATE TEMP TABLE rcn_rec ON COMMIT DROP AS
SELECT row_number() OVER () AS rid, s.* FROM (
  SELECT 'payment' AS kind, coalesce(nullif(p.out_trade_no, ''), p.payment_id) AS key, p.channel_trade_no AS ch_no,
         p.payment_id, NULL::text AS refund_id, p.merchant_order_no,
         p.amount_minor + coalesce((SELECT e.amount_minor FROM settlement_entries e
                                     WHERE e.source_key = p.payment_id || '\\:unsettled'), 0) AS amount_minor,
         p.channel_fee_minor AS fee_minor, p.status
    FROM payment_records p
   WHERE p.channel = :channel AND p.bill_date = :bill_date AND p.merchant_id = :merchant_id
     AND p.livemode = :livemode
  UNION ALL
  SELECT 'refund', r.refund_id, r.channel_refund_no, r.payment_id, r.refund_id, p.merchant_order_no,
         r.amount_minor - coalesce((SELECT e.amount_minor FROM settlement_entries e
                                     WHERE e.source_key = r.refund_id || '\\:unsettled'), 0),
         NULL, r.status
    FROM refund_records r JOIN payment_records p ON p.payment_id = r.payment_id
   WHERE r.channel = :channel AND r.bill_date = :bill_date AND r.merchant_id = :merchant_id
     AND p.livemode = :livemode
) AS s
"""
# Juhe's keys are unique in practice; when two records share a key or a channel number the pair join
# below gives a line more than one row, which is how that (rare) case is noticed: then the first staged
# record per key stays, and channel numbers are looked up in a deduplicated copy.
_DEDUPLICATE = (
    """DELETE FROM rcn_rec r USING (SELECT kind, key, min(rid) AS keep FROM rcn_rec GROUP BY kind, key
                                      HAVING count(*) > 1) AS d
        WHERE r.kind = d.kind AND r.key = d.key AND r.rid <> d.keep""",
    """CREATE TEMP TABLE rcn_ch ON COMMIT DROP AS
         SELECT DISTINCT ON (ch_no) * FROM rcn_rec WHERE kind = 'payment' AND ch_no <> '' ORDER BY ch_no, rid""",
    "DROP TABLE rcn_pair",
)

# `domain.classify` as one CASE, over a line `l` and the record fields r_kind, r_status, r_amount, r_fee
# (r_kind NULL: no record).
_OUTCOME = f"""CASE
    WHEN r_kind IS NULL THEN '{Outcome.MISSING_IN_JUHE}'
    WHEN (r_status = 'succeeded') <> l.channel_ok THEN '{Outcome.STATUS_MISMATCH}'
    WHEN r_amount <> l.amount_minor THEN '{Outcome.AMOUNT_MISMATCH}'
    WHEN r_fee IS NOT NULL AND r_kind = 'payment' AND r_fee <> l.fee_minor THEN '{Outcome.FEE_MISMATCH}'
    ELSE '{Outcome.MATCHED}' END"""

# Temporary tables are never analysed by autovacuum: without statistics the planner could pick nested loops.
_ANALYZE = ("ANALYZE rcn_line", "ANALYZE rcn_rec")


def _pair(channel_numbers: str) -> str:
    """Which records each line can reach: its own key (k), and for a payment line with a channel number
    the record that number points at (c, looked up in `channel_numbers`: `rcn_rec` itself or its
    deduplicated copy). `rid` is the record it meets when nothing competes for it, and `outcome` the
    classification against that record; both are redone for lines that compete."""
    return f"""CREATE TEMP TABLE rcn_pair ON COMMIT DROP AS
         SELECT l.seq, l.key_rid, l.ch_rid, l.rid, {_OUTCOME} AS outcome
           FROM (SELECT l.*, k.rid AS key_rid, c.rid AS ch_rid, coalesce(k.rid, c.rid) AS rid,
                        CASE WHEN k.rid IS NOT NULL THEN k.kind WHEN c.rid IS NOT NULL THEN 'payment' END AS r_kind,
                        CASE WHEN k.rid IS NOT NULL THEN k.status ELSE c.status END AS r_status,
                        CASE WHEN k.rid IS NOT NULL THEN k.amount_minor ELSE c.amount_minor END AS r_amount,
                        CASE WHEN k.rid IS NOT NULL THEN k.fee_minor ELSE c.fee_minor END AS r_fee
                   FROM rcn_line l
                   LEFT JOIN rcn_rec k ON k.kind = l.kind AND k.key = l.key
                   LEFT JOIN {channel_numbers} c ON c.kind = 'payment' AND c.ch_no <> '' AND l.kind = 'payment'
                                                AND l.ch_no <> '' AND c.ch_no = l.ch_no) AS l"""


# records two or more lines can reach (a line counts once even if both its ways lead there)
_CONTENDED = """CREATE TEMP TABLE rcn_contended ON COMMIT DROP AS
     SELECT rid FROM (SELECT key_rid AS rid FROM rcn_pair WHERE key_rid IS NOT NULL
                      UNION ALL
                      SELECT ch_rid FROM rcn_pair WHERE ch_rid IS NOT NULL AND ch_rid IS DISTINCT FROM key_rid
                     ) AS reach
      GROUP BY rid HAVING count(*) > 1"""

# Lines reaching a contended record are decided one at a time in bill order, exactly as the matcher
# pops its index. Records only they can reach are untouched by every other line, so deciding them apart
# from the set-based rest is exact. Then their outcome is classified again against what they got.
_RESOLVE_TANGLED = f"""
DO $$
DECLARE
  line_row record;
  taken bigint;
BEGIN
  CREATE TEMP TABLE rcn_taken (rid bigint PRIMARY KEY) ON COMMIT DROP;
  CREATE TEMP TABLE rcn_tangled (seq bigint PRIMARY KEY, rid bigint) ON COMMIT DROP;
  FOR line_row IN SELECT p.seq, p.key_rid, p.ch_rid FROM rcn_pair p
            WHERE p.key_rid IN (SELECT rid FROM rcn_contended) OR p.ch_rid IN (SELECT rid FROM rcn_contended)
            ORDER BY p.seq
  LOOP
    taken := NULL;
    IF line_row.key_rid IS NOT NULL THEN
      INSERT INTO rcn_taken VALUES (line_row.key_rid) ON CONFLICT DO NOTHING RETURNING rid INTO taken;
    END IF;
    IF taken IS NULL AND line_row.ch_rid IS NOT NULL THEN
      INSERT INTO rcn_taken VALUES (line_row.ch_rid) ON CONFLICT DO NOTHING RETURNING rid INTO taken;
    END IF;
    INSERT INTO rcn_tangled VALUES (line_row.seq, taken);
  END LOOP;
  UPDATE rcn_pair p SET rid = x.rid, outcome = x.outcome
    FROM (SELECT t.seq, t.rid, {_OUTCOME} AS outcome
            FROM (SELECT t.seq, t.rid, r.kind AS r_kind, r.status AS r_status, r.amount_minor AS r_amount,
                         r.fee_minor AS r_fee
                    FROM rcn_tangled t LEFT JOIN rcn_rec r ON r.rid = t.rid) AS t
            JOIN rcn_line l ON l.seq = t.seq) AS x
   WHERE p.seq = x.seq;
END $$
"""

_ITEM_COLUMNS = """run_id, outcome, resolution, resolution_status, kind, key, payment_id, refund_id, merchant_order_no,
    channel_trade_no, juhe_amount_minor, channel_amount_minor, juhe_fee_minor, channel_fee_minor, juhe_status,
    channel_status, detail"""

# Every line not simply matched, in bill order, with the record it met (if any).
_INSERT_LINE_ITEMS = f"""
INSERT INTO reconciliation_items ({_ITEM_COLUMNS})
SELECT :run_id, p.outcome,
       CASE WHEN p.outcome = '{Outcome.STATUS_MISMATCH}' AND l.channel_ok AND r.kind = 'payment'
            THEN '{Resolution.CASHIER_REQUERY}' ELSE '{Resolution.MANUAL}' END,
       'open', l.kind, l.key, r.payment_id, r.refund_id, r.merchant_order_no, l.ch_no, r.amount_minor,
       l.amount_minor, r.fee_minor, l.fee_minor, r.status, l.status,
       CASE p.outcome
         WHEN '{Outcome.MISSING_IN_JUHE}' THEN '{MISSING_IN_JUHE_DETAIL}'
         WHEN '{Outcome.STATUS_MISMATCH}' THEN format('Juhe %s, channel %s', r.status, l.status)
         WHEN '{Outcome.AMOUNT_MISMATCH}' THEN format('Juhe %s, channel %s', r.amount_minor, l.amount_minor)
         ELSE format('expected fee %s, channel charged %s', r.fee_minor, l.fee_minor) END
  FROM rcn_pair p JOIN rcn_line l ON l.seq = p.seq LEFT JOIN rcn_rec r ON r.rid = p.rid
 WHERE p.outcome <> '{Outcome.MATCHED}'
 ORDER BY p.seq
"""

# The records no line met that Juhe counts as money moved (`Matcher.leftovers`).
_INSERT_LEFTOVERS = f"""
INSERT INTO reconciliation_items ({_ITEM_COLUMNS})
SELECT :run_id, '{Outcome.MISSING_AT_CHANNEL}', '{Resolution.MANUAL}', 'open', r.kind, r.key, r.payment_id,
       r.refund_id, r.merchant_order_no, r.ch_no, r.amount_minor, NULL, r.fee_minor, NULL, r.status, NULL,
       '{MISSING_AT_CHANNEL_DETAIL}'
  FROM (SELECT DISTINCT ON (kind, key) * FROM rcn_rec  -- one per key, should two records share one
         WHERE rid IN (SELECT rid FROM rcn_rec WHERE status = 'succeeded'
                       EXCEPT ALL SELECT rid FROM rcn_pair WHERE rid IS NOT NULL)
         ORDER BY kind, key, rid) AS r
 ORDER BY r.rid
"""

_COUNTS = "SELECT outcome, count(*) FROM rcn_pair GROUP BY outcome"


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under SQLAlchemy's, inside the same transaction (COPY is asyncpg's)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def stage(
    conn: AsyncConnection, *, channel: str, merchant_id: str, bill_date: date, livemode: bool = True
) -> None:
    """Create this transaction's staging tables and copy Juhe's records of the day in one mode into them (a
    sandbox's bill is compared with test records only, a real channel's with live ones)."""
    for statement in _CREATE:
        await conn.execute(text(statement))
    params = {"channel": channel, "bill_date": bill_date, "merchant_id": merchant_id, "livemode": livemode}
    await conn.execute(text(_STAGE_RECORDS), params)


async def copy_lines(conn: AsyncConnection, rows: AsyncIterable[tuple[Any, ...]]) -> int:
    """Stream bill lines (tuples in `LINE_COLUMNS` order) into `rcn_line` with one binary COPY; asyncpg
    pulls from `rows` as its send buffer drains, so no more than one buffer is ever held. Returns the
    number of lines copied."""
    driver = await _driver(conn)
    status = await driver.copy_records_to_table("rcn_line", records=rows, columns=list(LINE_COLUMNS))
    return int(str(status).rsplit(" ", 1)[-1])


async def classify(conn: AsyncConnection, run_id: str, *, line_count: int) -> dict[str, int]:
    """Match the staged bill against the staged records, write every non-matched outcome as an item of
    `run_id` (bill order, then the records the bill never mentioned) and return the counts per outcome."""
    for statement in _ANALYZE:
        await conn.execute(text(statement))
    await conn.execute(text(_pair("rcn_rec")))
    if await conn.scalar(text("SELECT count(*) FROM rcn_pair")) != line_count:
        for statement in _DEDUPLICATE:
            await conn.execute(text(statement))
        await conn.execute(text(_pair("rcn_ch")))
    await conn.execute(text(_CONTENDED))
    if await conn.scalar(text("SELECT EXISTS (SELECT 1 FROM rcn_contended)")):
        await conn.execute(text(_RESOLVE_TANGLED))
    await conn.execute(text("ANALYZE rcn_pair"))
    counts = {str(outcome): int(n) for outcome, n in await conn.execute(text(_COUNTS))}
    await conn.execute(text(_INSERT_LINE_ITEMS), {"run_id": run_id})
    missing = (await conn.execute(text(_INSERT_LEFTOVERS), {"run_id": run_id})).rowcount
    if missing:
        counts[Outcome.MISSING_AT_CHANNEL.value] = int(missing)
    return counts
