"""Queries of the migration database: runs, files (checkpoints), row records (report, rejections, id map)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.migration.domain.control import money_key
from services.migration.store.tables import run_rows

REJECTED_LISTED_MAX = 200  # rejected rows listed in the report; all are in the table (and the API's pages)


async def create_run(
    conn: AsyncConnection, *, run_id: str, platform: str, mode: str, fingerprint: str, control: dict[str, Any] | None
) -> None:
    sql = """INSERT INTO migration_runs (id, platform, mode, status, fingerprint, control)
             VALUES (:id, :p, :m, 'running', :f, CAST(:c AS jsonb))"""
    params = {"id": run_id, "p": platform, "m": mode, "f": fingerprint, "c": json.dumps(control) if control else None}
    await conn.execute(text(sql), params)


async def add_file(conn: AsyncConnection, run_id: str, kind: str, values: dict[str, Any]) -> None:
    sql = """INSERT INTO migration_run_files (run_id, kind, path, format, encoding, sha256, records)
             VALUES (:run_id, :kind, :path, :format, :encoding, :sha256, :records)"""
    await conn.execute(text(sql), {"run_id": run_id, "kind": kind, **values})


async def get_run(conn: AsyncConnection, run_id: str, *, for_update: bool = False) -> RowMapping | None:
    lock = " FOR UPDATE" if for_update else ""
    return (
        (await conn.execute(text(f"SELECT * FROM migration_runs WHERE id = :i{lock}"), {"i": run_id}))
        .mappings()
        .first()
    )


async def find_run(conn: AsyncConnection, *, platform: str, fingerprint: str) -> RowMapping | None:
    """The real run of exactly these files that is not reversed: running it again resumes or replays it."""
    sql = """SELECT * FROM migration_runs WHERE platform = :p AND fingerprint = :f AND mode = 'real'
                AND status <> 'reversed' ORDER BY created_at DESC LIMIT 1"""
    return (await conn.execute(text(sql), {"p": platform, "f": fingerprint})).mappings().first()


async def list_runs(conn: AsyncConnection, *, platform: str, limit: int, before: str | None) -> list[RowMapping]:
    """Newest first by id (ids are time-ordered); `before`: the last id of the previous page."""
    sql = (
        "SELECT * FROM migration_runs WHERE platform = :p AND (CAST(:b AS text) IS NULL OR id < :b) "
        "ORDER BY id DESC LIMIT :n"
    )
    return list((await conn.execute(text(sql), {"p": platform, "b": before, "n": limit})).mappings().all())


async def files(conn: AsyncConnection, run_id: str) -> list[RowMapping]:
    sql = "SELECT * FROM migration_run_files WHERE run_id = :r"
    return list((await conn.execute(text(sql), {"r": run_id})).mappings().all())


async def records_done(conn: AsyncConnection, run_id: str, kind: str) -> int:
    sql = "SELECT records_done FROM migration_run_files WHERE run_id = :r AND kind = :k"
    return int((await conn.execute(text(sql), {"r": run_id, "k": kind})).scalar_one())


async def set_checkpoint(conn: AsyncConnection, run_id: str, kind: str, done: int) -> None:
    sql = "UPDATE migration_run_files SET records_done = :d WHERE run_id = :r AND kind = :k"
    await conn.execute(text(sql), {"r": run_id, "k": kind, "d": done})


async def set_status(
    conn: AsyncConnection, run_id: str, *, old: Sequence[str], new: str, report: dict[str, Any] | None = None
) -> RowMapping | None:
    """Compare-and-set on the status: two processes never both finalise or reverse a run."""
    sql = """UPDATE migration_runs SET status = :new, updated_at = now(),
                    report = COALESCE(CAST(:rep AS jsonb), report),
                    finalised_at = CASE WHEN :new = 'finalised' THEN now() ELSE finalised_at END
              WHERE id = :r AND status = ANY(:old) RETURNING *"""
    params = {"r": run_id, "old": list(old), "new": new, "rep": json.dumps(report) if report is not None else None}
    return (await conn.execute(text(sql), params)).mappings().first()


async def set_report(conn: AsyncConnection, run_id: str, report: dict[str, Any]) -> None:
    sql = "UPDATE migration_runs SET report = CAST(:rep AS jsonb), updated_at = now() WHERE id = :r"
    await conn.execute(text(sql), {"r": run_id, "rep": json.dumps(report)})


async def mark_controls_posted(conn: AsyncConnection, run_id: str) -> None:
    await conn.execute(text("UPDATE migration_runs SET controls_posted = true WHERE id = :r"), {"r": run_id})


# --- the rows of a batch -------------------------------------------------------------------------------
async def taken_in_run(
    conn: AsyncConnection, run_id: str, kind: str, *, source_ids: list[str], digests: list[str]
) -> tuple[set[str], set[str]]:
    """Source ids and document digests this run already accepted (any status but rejected)."""
    sql = """SELECT source_id, document_digest FROM migration_run_rows
              WHERE run_id = :r AND kind = :k AND status <> 'rejected'
                AND (source_id = ANY(:s) OR document_digest = ANY(:d))"""
    rows = (await conn.execute(text(sql), {"r": run_id, "k": kind, "s": source_ids, "d": digests})).all()
    asked = set(source_ids)
    return {r[0] for r in rows if r[0] in asked}, {r[1] for r in rows if r[1] is not None}


async def live_elsewhere(
    conn: AsyncConnection, *, platform: str, kind: str, source_ids: list[str], run_id: str
) -> dict[str, RowMapping]:
    """The id map: rows of these source ids already migrated (live) by another run."""
    sql = """SELECT source_id, juhe_id, holder_id, run_id FROM migration_run_rows
              WHERE platform = :p AND kind = :k AND live AND source_id = ANY(:s) AND run_id <> :r"""
    params = {"p": platform, "k": kind, "s": source_ids, "r": run_id}
    return {str(r["source_id"]): r for r in (await conn.execute(text(sql), params)).mappings()}


async def holders_of(
    conn: AsyncConnection, *, platform: str, run_id: str, kind: str, source_ids: list[str]
) -> dict[str, str]:
    """Source id → Juhe holder id for references (balances → persons, merchants): accepted in this run
    (written, skipped or, in a dry run, valid), or live from an earlier run."""
    if not source_ids:
        return {}
    sql = """SELECT source_id, juhe_id FROM migration_run_rows
              WHERE kind = :k AND source_id = ANY(:s) AND juhe_id IS NOT NULL
                AND ((run_id = :r AND status IN ('valid', 'written', 'skipped')) OR (platform = :p AND live))"""
    params = {"k": kind, "s": source_ids, "r": run_id, "p": platform}
    return {str(r[0]): str(r[1]) for r in (await conn.execute(text(sql), params)).all()}


_ROW_COLUMNS = [c.name for c in run_rows.columns]


async def insert_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """A batch's row records with one binary COPY inside the caller's transaction: the run writes one record
    per source row, so this is the migration database's hot path (a multi-row INSERT parses and plans 17
    parameters per row)."""
    if not rows:
        return
    records = [
        tuple(json.dumps(row[c]) if c == "details" and row[c] is not None else row[c] for c in _ROW_COLUMNS)
        for row in rows
    ]
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    await driver.copy_records_to_table(run_rows.name, records=records, columns=_ROW_COLUMNS)


# --- merchant access (gateway identity, routing contracts) ---------------------------------------------
async def merchants_to_provision(conn: AsyncConnection, run_id: str, *, after: int, limit: int) -> list[RowMapping]:
    """The run's live migrated merchants after record `after`, in file order, with what provisioning recorded."""
    sql = """SELECT record_no, source_id, juhe_id, details FROM migration_run_rows
              WHERE run_id = :r AND kind = 'merchants' AND status = 'written' AND live AND record_no > :a
              ORDER BY record_no LIMIT :n"""
    return list((await conn.execute(text(sql), {"r": run_id, "a": after, "n": limit})).mappings().all())


async def record_access(conn: AsyncConnection, run_id: str, record_no: int, access: dict[str, Any]) -> None:
    """What provisioning did for one merchant (key id, never its secret; contracts), under details.access."""
    sql = """UPDATE migration_run_rows SET details = coalesce(details, '{}'::jsonb) || jsonb_build_object('access',
                    coalesce(details->'access', '{}'::jsonb) || CAST(:a AS jsonb))
              WHERE run_id = :r AND kind = 'merchants' AND record_no = :n"""
    await conn.execute(text(sql), {"r": run_id, "n": record_no, "a": json.dumps(access)})


# --- reversal ------------------------------------------------------------------------------------------
async def live_openings(conn: AsyncConnection, run_id: str, limit: int) -> list[RowMapping]:
    sql = """SELECT record_no, source_id FROM migration_run_rows
              WHERE run_id = :r AND kind = 'balances' AND live ORDER BY record_no LIMIT :n"""
    return list((await conn.execute(text(sql), {"r": run_id, "n": limit})).mappings().all())


async def mark_reversed(conn: AsyncConnection, run_id: str, record_nos: list[int]) -> None:
    sql = """UPDATE migration_run_rows SET status = 'reversed', live = false
              WHERE run_id = :r AND kind = 'balances' AND record_no = ANY(:n) AND live"""
    await conn.execute(text(sql), {"r": run_id, "n": record_nos})


async def release_holders(conn: AsyncConnection, run_id: str) -> None:
    """The holders stay in the ledger (with nothing in them); their source ids are free for a new run."""
    sql = """UPDATE migration_run_rows SET status = 'reversed', live = false
              WHERE run_id = :r AND kind IN ('merchants', 'persons') AND live"""
    await conn.execute(text(sql), {"r": run_id})


async def has_coupons(conn: AsyncConnection, run_id: str) -> bool:
    """Whether the run has a coupons file: marketing may hold coupons of a batch the run never committed
    (killed in flight), so a reversal asks marketing to void even when no coupon row is live here."""
    sql = "SELECT EXISTS (SELECT 1 FROM migration_run_files WHERE run_id = :r AND kind = 'coupons')"
    return bool((await conn.execute(text(sql), {"r": run_id})).scalar_one())


async def release_coupons(conn: AsyncConnection, run_id: str) -> None:
    """After marketing voided the run's unused coupons: their source ids are free for a new run (a coupon
    already used stays the user's in marketing; the reversal report counts those)."""
    sql = """UPDATE migration_run_rows SET status = 'reversed', live = false
              WHERE run_id = :r AND kind = 'coupons' AND live"""
    await conn.execute(text(sql), {"r": run_id})


# --- report --------------------------------------------------------------------------------------------
async def counts(conn: AsyncConnection, run_id: str) -> list[RowMapping]:
    sql = """SELECT kind, status, reason, count(*) AS n FROM migration_run_rows WHERE run_id = :r
              GROUP BY kind, status, reason ORDER BY kind, status, reason"""
    return list((await conn.execute(text(sql), {"r": run_id})).mappings().all())


async def balance_totals(conn: AsyncConnection, run_id: str) -> list[RowMapping]:
    """Per currency (credit rows apart, as `<currency>:credit`): every balance row of the file with an amount,
    and those written (or valid in a dry run)."""
    sql = """SELECT currency || CASE WHEN details->>'subaccount' = 'credit' THEN :tag ELSE '' END AS currency,
                    count(*) AS file_rows, coalesce(sum(amount_minor), 0) AS file_minor,
                    count(*) FILTER (WHERE status IN ('written', 'valid')) AS written_rows,
                    coalesce(sum(amount_minor) FILTER (WHERE status IN ('written', 'valid')), 0) AS written_minor
               FROM migration_run_rows WHERE run_id = :r AND kind = 'balances' AND currency IS NOT NULL
              GROUP BY 1 ORDER BY 1"""
    params = {"r": run_id, "tag": money_key("", credit=True)}
    return list((await conn.execute(text(sql), params)).mappings().all())


async def coupon_totals(conn: AsyncConnection, run_id: str) -> list[RowMapping]:
    """Per currency: every coupon row of the file with a face value, and those written (or valid in a dry run)."""
    sql = """SELECT currency, count(*) AS file_rows, coalesce(sum(amount_minor), 0) AS file_minor,
                    count(*) FILTER (WHERE status IN ('written', 'valid')) AS written_rows,
                    coalesce(sum(amount_minor) FILTER (WHERE status IN ('written', 'valid')), 0) AS written_minor
               FROM migration_run_rows WHERE run_id = :r AND kind = 'coupons' AND currency IS NOT NULL
              GROUP BY 1 ORDER BY 1"""
    return list((await conn.execute(text(sql), {"r": run_id})).mappings().all())


async def rejected_rows(
    conn: AsyncConnection, run_id: str, *, after: tuple[str, int] | None, limit: int
) -> list[RowMapping]:
    sql = """SELECT kind, record_no, source_id, reason, detail FROM migration_run_rows
              WHERE run_id = :r AND status = 'rejected' AND (CAST(:k AS text) IS NULL OR (kind, record_no) > (:k, :n))
              ORDER BY kind, record_no LIMIT :lim"""
    params = {"r": run_id, "k": after[0] if after else None, "n": after[1] if after else 0, "lim": limit}
    return list((await conn.execute(text(sql), params)).mappings().all())


async def sample_holders(conn: AsyncConnection, run_id: str, size: int) -> list[RowMapping]:
    """N random migrated persons of the run with what the run credited them, per sub-account and currency."""
    sql = """WITH sample AS (
               SELECT juhe_id FROM migration_run_rows
                WHERE run_id = :r AND kind = 'persons' AND status IN ('written', 'skipped') ORDER BY random() LIMIT :n)
             SELECT s.juhe_id AS holder_id, b.details->>'subaccount' AS subaccount, b.currency,
                    coalesce(sum(b.amount_minor), 0) AS amount_minor
               FROM sample s LEFT JOIN migration_run_rows b
                 ON b.run_id = :r AND b.kind = 'balances' AND b.holder_id = s.juhe_id AND b.status = 'written'
              GROUP BY s.juhe_id, b.details->>'subaccount', b.currency"""
    return list((await conn.execute(text(sql), {"r": run_id, "n": size})).mappings().all())
