"""`python -m services.ledger.verify`: recompute the ledger from its entries and check every invariant.

Why a separate checker: the write path keeps balances incrementally for speed; this recomputes them the
slow, obvious way, set-based in SQL, so a bug in batching, locking or arithmetic cannot hide. Checks:

1. every account's four counters = the sum of its entries' deltas (and no entry without an account);
2. every entry's running counters = the previous entry's + its delta, entry times never go backwards;
3. Σ debits = Σ credits per book (live, test) and currency, posted and pending, over all accounts and within
   every transfer; no transfer moves accounts of both books (docs/ledger.md "Books");
4. every flag and credit limit holds, no counter is negative, entry currency = account currency;
5. every transfer's postings agree with its entries and its status (pending reserved, posted amounts
   posted, voided/expired nothing), and a posted amount never exceeds the reserved one.

Exits 1 and prints each violation when any check fails; 0 and `ok` otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import asyncpg

from libs.common.db import asyncpg_dsn

VIOLATIONS_SHOWN_MAX = 20

CHECKS: dict[str, str] = {
    "counters_differ_from_entries": """
        WITH s AS (
          SELECT account_id,
                 sum(posted_delta_minor) FILTER (WHERE direction = 'debit') AS dp,
                 sum(posted_delta_minor) FILTER (WHERE direction = 'credit') AS cp,
                 sum(pending_delta_minor) FILTER (WHERE direction = 'debit') AS dq,
                 sum(pending_delta_minor) FILTER (WHERE direction = 'credit') AS cq
            FROM entries GROUP BY account_id)
        SELECT coalesce(a.id, s.account_id) AS account_id FROM accounts a FULL JOIN s ON s.account_id = a.id
         WHERE a.id IS NULL
            OR coalesce(s.dp, 0) <> a.debits_posted OR coalesce(s.cp, 0) <> a.credits_posted
            OR coalesce(s.dq, 0) <> a.debits_pending OR coalesce(s.cq, 0) <> a.credits_pending
    """,
    "running_counters_broken": """
        SELECT id AS entry_id, account_id FROM (
          SELECT e.*,
                 lag(debits_posted, 1, 0::bigint) OVER w AS p_dp, lag(credits_posted, 1, 0::bigint) OVER w AS p_cp,
                 lag(debits_pending, 1, 0::bigint) OVER w AS p_dq, lag(credits_pending, 1, 0::bigint) OVER w AS p_cq,
                 lag(created_at) OVER w AS p_at
            FROM entries e WINDOW w AS (PARTITION BY account_id ORDER BY id)) x
         WHERE debits_posted <> p_dp + CASE WHEN direction = 'debit' THEN posted_delta_minor ELSE 0 END
            OR credits_posted <> p_cp + CASE WHEN direction = 'credit' THEN posted_delta_minor ELSE 0 END
            OR debits_pending <> p_dq + CASE WHEN direction = 'debit' THEN pending_delta_minor ELSE 0 END
            OR credits_pending <> p_cq + CASE WHEN direction = 'credit' THEN pending_delta_minor ELSE 0 END
            OR posted_delta_minor < 0 OR created_at < p_at
    """,
    "currency_unbalanced": """
        SELECT livemode, currency,
               sum(debits_posted::numeric) - sum(credits_posted::numeric) AS posted_difference,
               sum(debits_pending::numeric) - sum(credits_pending::numeric) AS pending_difference
          FROM accounts GROUP BY livemode, currency
        HAVING sum(debits_posted::numeric) <> sum(credits_posted::numeric)
            OR sum(debits_pending::numeric) <> sum(credits_pending::numeric)
    """,
    "transfer_unbalanced": """
        SELECT transfer_id, currency FROM entries GROUP BY transfer_id, currency
        HAVING sum(CASE WHEN direction = 'debit' THEN posted_delta_minor::numeric ELSE -posted_delta_minor END) <> 0
            OR sum(CASE WHEN direction = 'debit' THEN pending_delta_minor::numeric ELSE -pending_delta_minor END) <> 0
    """,
    "transfer_mixes_books": """
        SELECT e.transfer_id FROM entries e JOIN accounts a ON a.id = e.account_id
         GROUP BY e.transfer_id HAVING count(DISTINCT a.livemode) > 1
    """,
    "limit_violated": """
        SELECT id AS account_id FROM accounts
         WHERE (debits_must_not_exceed_credits
                AND debits_posted::numeric + debits_pending > credits_posted::numeric + credit_limit_minor)
            OR (credits_must_not_exceed_debits
                AND credits_posted::numeric + credits_pending > debits_posted::numeric + credit_limit_minor)
            OR least(debits_posted, credits_posted, debits_pending, credits_pending) < 0
            OR (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)
    """,
    "entry_currency_differs": """
        SELECT e.id AS entry_id, e.account_id FROM entries e JOIN accounts a ON a.id = e.account_id
         WHERE e.currency <> a.currency
    """,
    "transfer_disagrees_with_entries": """
        WITH p AS (
          SELECT t.id, t.status, x.account_id, x.direction,
                 sum(x.amount_minor) AS reserved, sum(x.posted_amount_minor) AS posted,
                 bool_or(x.posted_amount_minor > x.amount_minor OR x.amount_minor <= 0) AS bad_amount
            FROM transfers t,
                 jsonb_to_recordset(t.postings)
                   AS x(account_id text, direction text, amount_minor numeric, posted_amount_minor numeric)
           GROUP BY 1, 2, 3, 4),
        e AS (
          SELECT transfer_id, account_id, direction,
                 sum(posted_delta_minor) AS posted, sum(pending_delta_minor) AS pending
            FROM entries GROUP BY 1, 2, 3)
        SELECT coalesce(p.id, e.transfer_id) AS transfer_id, p.status
          FROM p FULL JOIN e ON e.transfer_id = p.id AND e.account_id = p.account_id AND e.direction = p.direction
         WHERE p.id IS NULL OR e.transfer_id IS NULL OR p.bad_amount
            OR e.posted <> p.posted
            OR e.pending <> CASE WHEN p.status = 'pending' THEN p.reserved ELSE 0 END
            OR (p.status IN ('voided', 'expired') AND p.posted <> 0)
            OR (p.status = 'pending' AND p.posted <> 0)
    """,
}


async def verify(dsn: str) -> dict[str, list[dict[str, object]]]:
    """Runs every check in one repeatable-read snapshot; returns {check: [violating rows]} (empty = ok)."""
    conn = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            found: dict[str, list[dict[str, object]]] = {}
            for name, sql in CHECKS.items():
                rows = await conn.fetch(f"SELECT * FROM ({sql}) v LIMIT {VIOLATIONS_SHOWN_MAX}")
                if rows:
                    found[name] = [{k: str(v) for k, v in dict(r).items()} for r in rows]
            return found
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", help="default: JUHE_LEDGER_DATABASE_URL / the ledger settings")
    args = parser.parse_args(argv)
    dsn = args.database_url
    if not dsn:
        from services.ledger.config import Settings

        dsn = Settings().database_url
    violations = asyncio.run(verify(dsn))
    for name, rows in violations.items():
        for row in rows:
            print(f"VIOLATION {name}: {json.dumps(row)}")
    print("ok" if not violations else f"FAILED: {len(violations)} check(s) violated")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
