"""A migration run: dry run or real run over the files, finalisation, reversal, the reconciliation report.

One batch (`batch_rows` records of one file) is one step: parse and check every record (domain/rows.py), check
duplicates and references against the run's own records, then — real run only — one ledger request for the
batch, then ONE commit of the batch's row records and the file's checkpoint. A kill at any point loses at
most the batch in flight; running again re-reads it from the checkpoint and the ledger replays what it
already has (deterministic holder ids, transfer keys from run and source id). Memory is bounded by the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import text

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from libs.common.ids import new_id
from services.migration.clients.ledger import LedgerClient
from services.migration.clients.marketing import MarketingClient
from services.migration.domain import errors as e
from services.migration.domain import rows as r
from services.migration.domain.control import Control, ControlInvalid, parse_control, reconcile
from services.migration.flows import sources
from services.migration.store import runs as store

Progress = Callable[[str, int, int], None]  # (kind, records total, records done so far)
CONTROL_RECORDS_MAX = 100
# Batches of a file at the ledger at once (sent, not yet committed); the ledger's writer pipelines them.
PIPELINE_DEPTH = 2
VOID_BATCH = 10_000  # coupons marketing voids per call at a reversal


@dataclass(frozen=True, slots=True)
class RunFiles:
    merchants: Path | None = None
    persons: Path | None = None
    balances: Path | None = None
    control: Path | None = None
    encoding: str = "auto"
    coupons: Path | None = None

    def by_kind(self) -> dict[r.Kind, Path]:
        given = {
            r.Kind.MERCHANTS: self.merchants,
            r.Kind.PERSONS: self.persons,
            r.Kind.BALANCES: self.balances,
            r.Kind.COUPONS: self.coupons,
        }
        return {k: p for k, p in given.items() if p is not None}


@dataclass
class Migration:
    """What a run needs: its database, the ledger, the batch size and who the run belongs to."""

    uow: UnitOfWork
    ledger: LedgerClient
    platform: str
    batch_rows: int = 500
    sample_size: int = 20
    marketing: MarketingClient | None = None  # runs with coupons only


def _no_progress(kind: str, total: int, done: int) -> None:
    return None


# --- start or resume ---------------------------------------------------------------------------------
async def start(m: Migration, files: RunFiles, *, dry_run: bool, progress: Progress = _no_progress) -> str:
    """Runs the files to the end; returns the run id. A real run of files already run resumes that run."""
    run_id, paths = await prepare(m, files, dry_run=dry_run)
    await resume(m, run_id, progress=progress, paths=paths)
    return run_id


async def prepare(m: Migration, files: RunFiles, *, dry_run: bool) -> tuple[str, dict[r.Kind, Path]]:
    """Reads the files once (encoding, digest, record count) and records the run, or finds the real run of
    the same files and control (resume it, or — finished — nothing to do)."""
    inspected = {
        kind: await asyncio.to_thread(sources.inspect, path, files.encoding) for kind, path in files.by_kind().items()
    }
    if not inspected:
        raise Problem(e.SOURCE_INVALID, "give at least one of merchants, persons, balances, coupons")
    control = _read_control(files.control)
    if {r.Kind.BALANCES, r.Kind.COUPONS} & set(inspected) and control is None and not dry_run:
        raise Problem(e.CONTROL_MISSING, "a real run with opening balances or coupons needs --control")
    if r.Kind.COUPONS in inspected and m.marketing is None and not dry_run:
        raise Problem(e.SOURCE_INVALID, "coupons go to marketing: this process has no marketing client")
    mode = "dry_run" if dry_run else "real"
    fingerprint = _fingerprint(mode, inspected, control)
    async with m.uow.begin() as tx:
        existing = None if dry_run else await store.find_run(tx.conn, platform=m.platform, fingerprint=fingerprint)
        if existing is not None:  # running: resume it; finished: running it again changes nothing
            run_id = str(existing["id"])
        else:
            run_id = new_id("mig")
            await store.create_run(
                tx.conn,
                run_id=run_id,
                platform=m.platform,
                mode=mode,
                fingerprint=fingerprint,
                control=control.as_json() if control else None,
            )
            for kind, source in inspected.items():
                values = {
                    "path": str(source.path),
                    "format": source.format,
                    "encoding": source.encoding,
                    "sha256": source.sha256,
                    "records": source.records,
                }
                await store.add_file(tx.conn, run_id, kind.value, values)
    return run_id, {k: s.path for k, s in inspected.items()}


async def resume(
    m: Migration, run_id: str, *, progress: Progress = _no_progress, paths: dict[r.Kind, Path] | None = None
) -> None:
    async with run_lock(m, run_id):
        await _run_files(m, run_id, progress, paths or {})


@contextlib.asynccontextmanager
async def run_lock(m: Migration, run_id: str) -> AsyncIterator[None]:
    """One process per run (a run, its resumption, its reversal): a PostgreSQL session lock, which ends with
    the process, so a killed run can be resumed at once; a second process gets 409 `run_busy`."""
    async with m.uow.engine.connect() as guard:
        got = (await guard.execute(text("SELECT pg_try_advisory_lock(hashtext(:r))"), {"r": run_id})).scalar_one()
        await guard.commit()
        if not got:
            raise Problem(e.RUN_BUSY, f"run {run_id} is being worked on by another process")
        try:
            yield
        finally:
            await guard.execute(text("SELECT pg_advisory_unlock(hashtext(:r))"), {"r": run_id})
            await guard.commit()


async def _run_files(m: Migration, run_id: str, progress: Progress, paths: dict[r.Kind, Path]) -> None:
    async with m.uow.read() as conn:
        run = await store.get_run(conn, run_id)
        if run is None:
            raise Problem(e.RUN_NOT_FOUND, f"no migration run {run_id}")
        file_rows = {row["kind"]: row for row in await store.files(conn, run_id)}
    if run["status"] != "running":
        return
    real = run["mode"] == "real"
    control = Control.from_json(run["control"]) if run["control"] else None
    if real and control is not None and not run["controls_posted"]:
        await _post_controls(m, run_id, control, reverse=False)
        async with m.uow.begin() as tx:
            await store.mark_controls_posted(tx.conn, run_id)
    for kind in r.KIND_ORDER:
        f = file_rows.get(kind.value)
        if f is None:
            continue
        source = sources.SourceFile(
            paths.get(kind, Path(f["path"])), f["format"], f["encoding"], f["sha256"], int(f["records"])
        )
        done = int(f["records_done"])
        progress(kind.value, source.records, done)
        await _run_file(m, run, kind, sources.records(source, skip=done), source.records, progress, real=real)
    report = await build_report(m, run_id)
    async with m.uow.begin() as tx:
        await store.set_status(tx.conn, run_id, old=["running"], new="completed", report=report)


# --- one batch ---------------------------------------------------------------------------------------
@dataclass(eq=False)  # compared by identity: a batch is looked through often
class _Record:
    record_no: int
    values: dict[str, Any]
    row: r.Row | None = None


def _record(run: Any, kind: r.Kind, number: int, raw: dict[str, Any] | None) -> _Record:
    values: dict[str, Any] = {
        "run_id": run["id"],
        "kind": kind.value,
        "record_no": number,
        "platform": run["platform"],
        "source_id": None,
        "status": "rejected",
        "reason": None,
        "detail": None,
        "juhe_id": None,
        "holder_id": None,
        "document_digest": None,
        "currency": None,
        "amount_minor": None,
        "details": None,
        "live": False,
        "kyc_level": None,
    }
    record = _Record(number, values)
    if raw is None:
        return _reject(record, e.BAD_FIELD, "not a record of this file's schema (bad JSON or column count)")
    source_id = raw.get("source_id")
    values["source_id"] = str(source_id)[: r.SOURCE_ID_LENGTH_MAX] if source_id not in (None, "") else None
    if kind is r.Kind.BALANCES:  # the file's totals count every row with an amount, accepted or not
        values["currency"] = str(raw.get("currency") or "").strip().upper()[:3] or None
        values["details"] = {"subaccount": str(raw.get("subaccount") or "").strip()[:16]}  # credit counts apart
        with contextlib.suppress(r.RowRejected):
            values["amount_minor"] = r.amount_of(raw)
    if kind is r.Kind.COUPONS:  # the control counts every coupon row with its face value, accepted or not
        values["currency"] = str(raw.get("currency") or "").strip().upper()[:3] or None
        with contextlib.suppress(r.RowRejected):
            values["amount_minor"] = r.face_value_of(raw)
    try:
        record.row = r.parse(kind, raw)
    except r.RowRejected as exc:
        return _reject(record, exc.reason, exc.detail)
    values["status"] = "valid"
    if isinstance(record.row, r.PersonRow | r.MerchantRow):
        values["document_digest"] = r.document_digest(record.row.document_key)
        values["juhe_id"] = r.juhe_holder_id(run["platform"], kind, record.row.source_id)
    if isinstance(record.row, r.PersonRow):
        values["kyc_level"] = record.row.kyc_level
    if isinstance(record.row, r.MerchantRow):
        values["details"] = {"industry": record.row.industry, "name": record.row.name, **record.row.channel_ids}
    if isinstance(record.row, r.BalanceRow):
        values["details"] = {"subaccount": record.row.subaccount.value}
    if isinstance(record.row, r.CouponRow) and record.row.valid_until <= datetime.now(UTC):
        return _reject(record, e.COUPON_EXPIRED, "the coupon's validity ended: nothing to migrate")
    return record


def _reject(record: _Record, reason: str, detail: str) -> _Record:
    record.values.update(status="rejected", reason=reason, detail=detail, juhe_id=None, live=False)
    record.row = None
    return record


async def _run_file(
    m: Migration,
    run: Any,
    kind: r.Kind,
    records: Iterable[tuple[int, dict[str, Any] | None]],
    total: int,
    progress: Progress,
    *,
    real: bool,
) -> None:
    """The batches of one file, pipelined: while batch k is at the ledger (and then committed), batch k+1 is
    parsed and checked and sent too — at most `PIPELINE_DEPTH` batches in flight, committed strictly in file
    order (each waits for its predecessor's commit). Why it stays exactly-once: the checkpoint only moves
    with a committed batch, so a kill re-sends every uncommitted batch and the ledger replays them (holder
    ids and transfer keys are deterministic); duplicates against batches not committed yet are caught by
    `recent` (the accepted ids and documents of the batches in flight)."""
    run_id = str(run["id"])
    inflight: list[asyncio.Task[int]] = []
    recent: list[tuple[set[str], set[str]]] = []
    source = iter(records)
    try:
        while batch := list(islice(source, m.batch_rows)):
            prepared = [_record(run, kind, number, raw) for number, raw in batch]
            async with m.uow.read() as conn:
                accepted = await _check_duplicates(conn, run, kind, prepared, recent)
                if kind in (r.Kind.BALANCES, r.Kind.COUPONS):
                    await _check_references(conn, run, prepared)
            recent = [*recent[-(PIPELINE_DEPTH - 1) :], accepted]
            previous = inflight[-1] if inflight else None
            inflight.append(asyncio.create_task(_send_and_commit(m, run_id, kind, prepared, previous, real=real)))
            while len(inflight) >= PIPELINE_DEPTH or (inflight and inflight[0].done()):
                progress(kind.value, total, await inflight.pop(0))
        while inflight:
            progress(kind.value, total, await inflight.pop(0))
    finally:
        for task in inflight:
            task.cancel()
        for task in inflight:
            with contextlib.suppress(BaseException):
                await task


async def _send_and_commit(
    m: Migration, run_id: str, kind: r.Kind, records: list[_Record], previous: asyncio.Task[int] | None, *, real: bool
) -> int:
    """The ledger request of a batch, then — after the batch before it committed — ONE commit of its row
    records and the file's checkpoint. Returns the checkpoint."""
    if real:
        await _write(m, run_id, kind, records)
    if previous is not None:
        await asyncio.shield(previous)  # in order; its failure stops this batch before its commit
    first, last = records[0].record_no, records[-1].record_no
    async with m.uow.begin() as tx:
        if await store.records_done(tx.conn, run_id, kind.value) >= first:
            raise Problem(e.RUN_BUSY, f"run {run_id}: this batch was written by another process")
        await store.insert_rows(tx.conn, [rec.values for rec in records])
        await store.set_checkpoint(tx.conn, run_id, kind.value, last)
    return last


async def _check_duplicates(
    conn: Any, run: Any, kind: r.Kind, records: list[_Record], recent: list[tuple[set[str], set[str]]]
) -> tuple[set[str], set[str]]:
    """Rejects repeats of a source id or document within the run (committed, in flight, or earlier in this
    batch); returns the ids and documents this batch accepted."""
    valid = [rec for rec in records if rec.row is not None]
    ids = [rec.row.source_id for rec in valid if rec.row is not None]
    digests = [str(rec.values["document_digest"]) for rec in valid if rec.values["document_digest"]]
    taken_ids, taken_docs = await store.taken_in_run(conn, str(run["id"]), kind.value, source_ids=ids, digests=digests)
    for flight_ids, flight_docs in recent:
        taken_ids |= flight_ids.intersection(ids)
        taken_docs |= flight_docs.intersection(digests)
    accepted: tuple[set[str], set[str]] = (set(), set())
    elsewhere = await store.live_elsewhere(
        conn, platform=run["platform"], kind=kind.value, source_ids=ids, run_id=run["id"]
    )
    for rec in valid:
        assert rec.row is not None
        source_id, digest = rec.row.source_id, rec.values["document_digest"]
        if source_id in taken_ids:
            _reject(rec, e.DUPLICATE_SOURCE_ID, f"source_id {source_id} appears earlier in the file")
            continue
        if digest is not None and digest in taken_docs:
            _reject(rec, e.DUPLICATE_DOCUMENT, "the same identity document appears earlier in the file")
            continue
        taken_ids.add(source_id)
        accepted[0].add(source_id)
        if digest is not None:
            taken_docs.add(digest)
            accepted[1].add(digest)
        if source_id in elsewhere:  # migrated by an earlier run: the id map answers, nothing is written
            rec.values.update(
                status="skipped",
                juhe_id=elsewhere[source_id]["juhe_id"],
                holder_id=elsewhere[source_id]["holder_id"],
                detail=f"migrated by run {elsewhere[source_id]['run_id']}",
            )
    return accepted


async def _check_references(conn: Any, run: Any, records: list[_Record]) -> None:
    rows = [
        (rec, rec.row)
        for rec in records
        if isinstance(rec.row, r.BalanceRow | r.CouponRow) and rec.values["status"] == "valid"
    ]
    persons = await store.holders_of(
        conn,
        platform=run["platform"],
        run_id=run["id"],
        kind="persons",
        source_ids=[b.person_source_id for _, b in rows],
    )
    merchants = await store.holders_of(
        conn,
        platform=run["platform"],
        run_id=run["id"],
        kind="merchants",
        source_ids=[b.merchant_source_id for _, b in rows if b.merchant_source_id],
    )
    for rec, balance in rows:
        if balance.person_source_id not in persons:
            _reject(
                rec, e.UNKNOWN_PERSON, f"person {balance.person_source_id} is not migrated (nor valid in this file)"
            )
        elif balance.merchant_source_id is not None and balance.merchant_source_id not in merchants:
            _reject(rec, e.UNKNOWN_MERCHANT, f"merchant {balance.merchant_source_id} is not migrated")
        else:
            rec.values["holder_id"] = persons[balance.person_source_id]
            if balance.merchant_source_id is not None:
                rec.values["details"] = {
                    **(rec.values["details"] or {}),
                    "merchant_holder_id": merchants[balance.merchant_source_id],
                }


async def _write(m: Migration, run_id: str, kind: r.Kind, records: list[_Record]) -> None:
    """The ledger request of the batch; rows the ledger refuses become rejections with its reason."""
    todo = [rec for rec in records if rec.values["status"] == "valid"]
    key = f"{run_id}:{kind.value}:{records[0].record_no}"
    if kind is r.Kind.COUPONS:
        await _write_coupons(m, run_id, key, todo)
        return
    if kind is r.Kind.BALANCES:
        money = [rec for rec in todo if isinstance(rec.row, r.BalanceRow) and rec.row.amount_minor > 0]
        for rec in todo:
            if isinstance(rec.row, r.BalanceRow) and rec.row.amount_minor == 0:  # the sub-account exists already
                rec.values.update(status="written", live=True)
        if money:
            results = await m.ledger.post_openings(key, run_id, [_opening(rec) for rec in money])
            for rec, result in zip(money, results, strict=True):
                if result["status"] in ("created", "replayed"):
                    rec.values.update(status="written", live=True, juhe_id=result["transfer_id"])
                else:
                    _reject(rec, e.LEDGER_REFUSED, f"{result.get('code')}: {result.get('detail')}")
        return
    if todo:
        results = await m.ledger.open_holders(key, [_holder(rec) for rec in todo])
        for rec, result in zip(todo, results, strict=True):
            if result["status"] in ("created", "existing"):
                rec.values.update(status="written", live=True)
            else:
                _reject(rec, e.HOLDER_CONFLICT, f"ledger: {result['status']} {result.get('detail') or ''}".strip())


async def _write_coupons(m: Migration, run_id: str, key: str, todo: list[_Record]) -> None:
    """One marketing import per batch; a duplicate is a coupon this run wrote before a kill (written)."""
    if not todo:
        return
    assert m.marketing is not None
    results = await m.marketing.import_coupons(key, run_id, [_coupon(rec) for rec in todo])
    for rec, result in zip(todo, results, strict=True):
        if result["status"] in ("created", "duplicate"):
            rec.values.update(status="written", live=True, juhe_id=result["coupon_id"])
        else:
            _reject(rec, e.MARKETING_REFUSED, f"{result.get('reason')}: {result.get('detail')}")


def _coupon(rec: _Record) -> dict[str, Any]:
    row = rec.row
    assert isinstance(row, r.CouponRow)
    merchant = rec.values["details"].get("merchant_holder_id") if rec.values["details"] else None
    return {
        "source_id": row.source_id,
        "user_id": rec.values["holder_id"],
        "code": row.code,
        "face_value_minor": row.face_value_minor,
        "currency": row.currency,
        "threshold_minor": row.threshold_minor,
        "valid_from": row.valid_from.isoformat(),
        "valid_until": row.valid_until.isoformat(),
        "merchant_ids": [merchant] if merchant else [],
    }


def _holder(rec: _Record) -> dict[str, Any]:
    row = rec.row
    if isinstance(row, r.MerchantRow):
        return {
            "holder_id": rec.values["juhe_id"],
            "holder_type": "merchant",
            "name": row.name,
            "document_number": row.credit_code,
            "phone": row.phone,
            "legal_person": row.legal_person,
            "settlement_account": row.settlement_account,
            "verified": True,
            "currency": "CNY",
        }
    assert isinstance(row, r.PersonRow)
    return {
        "holder_id": rec.values["juhe_id"],
        "holder_type": "person",
        "name": row.name,
        "document_number": row.resident_id,
        "phone": row.phone,
        "bank_card": row.bank_card if row.kyc_level == 2 else None,
        "verified": row.kyc_level >= 1,
        "currency": "CNY",
    }


def _opening(rec: _Record) -> dict[str, Any]:
    row = rec.row
    assert isinstance(row, r.BalanceRow)
    return {
        "source_id": row.source_id,
        "holder_id": rec.values["holder_id"],
        "subaccount": row.subaccount.value,
        "amount_minor": row.amount_minor,
        "currency": row.currency,
        "merchant_holder_id": rec.values["details"].get("merchant_holder_id", ""),
        "credit_limit_minor": row.credit_limit_minor,
    }


# --- report, finalise, reverse -----------------------------------------------------------------------
async def build_report(m: Migration, run_id: str) -> dict[str, Any]:
    """Counts by kind and status, rejections by reason, money by currency (file / written / control /
    suspense), the reconciliation verdict and a sample read back from the ledger."""
    async with m.uow.read() as conn:
        run = await store.get_run(conn, run_id)
        if run is None:
            raise Problem(e.RUN_NOT_FOUND, f"no migration run {run_id}")
        file_rows = await store.files(conn, run_id)
        counts = await store.counts(conn, run_id)
        totals = await store.balance_totals(conn, run_id)
        coupon_totals = await store.coupon_totals(conn, run_id)
        rejected = await store.rejected_rows(conn, run_id, after=None, limit=store.REJECTED_LISTED_MAX)
        sample = await store.sample_holders(conn, run_id, m.sample_size) if run["mode"] == "real" else []
    rows: dict[str, dict[str, int]] = {}
    reasons: dict[str, int] = {}
    for c in counts:
        by_kind = rows.setdefault(c["kind"], {"read": 0})
        by_kind["read"] += int(c["n"])
        by_kind[c["status"]] = by_kind.get(c["status"], 0) + int(c["n"])
        if c["reason"]:
            reasons[c["reason"]] = reasons.get(c["reason"], 0) + int(c["n"])
    control = Control.from_json(run["control"]) if run["control"] else None
    suspense = await m.ledger.suspense(run_id) if run["mode"] == "real" else {}
    money: dict[str, dict[str, int | None]] = {}
    for t in totals:
        money[t["currency"]] = {
            "file_rows": int(t["file_rows"]),
            "file_minor": int(t["file_minor"]),
            "written_rows": int(t["written_rows"]),
            "written_minor": int(t["written_minor"]),
        }
    for currency, (count, total) in (control.balances if control else {}).items():
        money.setdefault(currency, {}).update(control_rows=count, control_minor=total)
    for currency, balance in suspense.items():
        money.setdefault(currency, {})["suspense_minor"] = balance
    coupons: dict[str, dict[str, int]] = {}
    for t in coupon_totals:
        coupons[t["currency"]] = {k: int(t[k]) for k in ("file_rows", "file_minor", "written_rows", "written_minor")}
    for currency, (count, total) in (control.coupons if control else {}).items():
        coupons.setdefault(currency, {}).update(control_rows=count, control_minor=total)
    differences: list[str] = []
    if control is not None:
        verdict = reconcile(
            control,
            file_counts={k: v["read"] for k, v in rows.items()},
            file_totals={c: (int(v.get("file_rows") or 0), int(v.get("file_minor") or 0)) for c, v in money.items()},
            written_totals={c: int(v.get("written_minor") or 0) for c, v in money.items()},
            suspense_minor=suspense if run["mode"] == "real" else {},
            rejected=sum(reasons.values()),
            coupon_file_totals={c: (v.get("file_rows", 0), v.get("file_minor", 0)) for c, v in coupons.items()},
            coupon_written_totals={
                c: (v.get("written_rows", 0), v.get("written_minor", 0)) for c, v in coupons.items()
            },
        )
        differences = verdict.differences
    else:
        differences = ["no control file: totals cannot be reconciled"]
    return {
        "run_id": run_id,
        "mode": run["mode"],
        "platform": run["platform"],
        "files": {
            f["kind"]: {
                "path": f["path"],
                "format": f["format"],
                "encoding": f["encoding"],
                "sha256": f["sha256"],
                "records": int(f["records"]),
                "records_done": int(f["records_done"]),
            }
            for f in file_rows
        },
        "rows": rows,
        "rejections": reasons,
        "rejected_rows": [dict(x) for x in rejected],
        "money": money,
        "coupons": coupons,
        "reconciled": not differences,
        "differences": differences,
        "sample": await _sample(m, sample),
    }


async def _sample(m: Migration, sample: list[Any]) -> dict[str, Any]:
    """Reads N migrated holders back through the ledger's wallet API: each sub-account's posted balance must
    be what this run credited (true until the holders start using their wallets)."""
    expected: dict[str, dict[tuple[str, str], int]] = {}
    for row in sample:
        per_holder = expected.setdefault(str(row["holder_id"]), {})
        if row["subaccount"] is not None:  # what is owed on a credit line is a debit balance there
            sign = -1 if row["subaccount"] == r.Subaccount.CREDIT.value else 1
            per_holder[(str(row["subaccount"]), str(row["currency"]))] = sign * int(row["amount_minor"])
    mismatches: list[str] = []
    for holder_id, want in expected.items():
        wallet = await m.ledger.my_wallet(holder_id)
        if wallet is None:
            mismatches.append(f"{holder_id}: not readable")
            continue
        have: dict[tuple[str, str], int] = {}
        for sub in wallet.get("subaccounts", []):
            k = (str(sub["subaccount_type"]), str(sub["currency"]))
            have[k] = have.get(k, 0) + int(sub["balances"]["posted_balance_minor"])
        mismatches.extend(
            f"{holder_id} {k}: ledger {have.get(k, 0)}, run {v}" for k, v in want.items() if have.get(k, 0) != v
        )
    return {"checked": len(expected), "mismatches": mismatches}


async def finalise(m: Migration, run_id: str) -> dict[str, Any]:
    """Only a completed real run whose every figure reconciles; afterwards it can no longer be reversed."""
    run = await _require(m, run_id)
    if run["mode"] != "real" or run["status"] != "completed":
        raise Problem(e.RUN_STATE_INVALID, f"run {run_id} is a {run['mode']} run, {run['status']}: cannot finalise")
    report = await build_report(m, run_id)
    if not report["reconciled"]:
        async with m.uow.begin() as tx:
            await store.set_report(tx.conn, run_id, report)
        raise Problem(e.FINALISATION_REFUSED, "; ".join(report["differences"]), differences=report["differences"])
    async with m.uow.begin() as tx:
        if await store.set_status(tx.conn, run_id, old=["completed"], new="finalised", report=report) is None:
            raise Problem(e.RUN_STATE_INVALID, f"run {run_id} changed meanwhile")
    return report


async def reverse(m: Migration, run_id: str, *, progress: Progress = _no_progress) -> dict[str, Any]:
    """Compensating transfers for every opening of the run, then its control transfers; holders stay (empty)
    and their source ids are free again. Resumable: only rows still live are reversed."""
    async with run_lock(m, run_id):
        return await _reverse(m, run_id, progress)


async def _reverse(m: Migration, run_id: str, progress: Progress) -> dict[str, Any]:
    run = await _require(m, run_id)
    if run["mode"] != "real" or run["status"] not in ("running", "completed", "reversing"):
        raise Problem(e.RUN_STATE_INVALID, f"run {run_id} is a {run['mode']} run, {run['status']}: cannot reverse")
    async with m.uow.begin() as tx:
        await store.set_status(tx.conn, run_id, old=["running", "completed", "reversing"], new="reversing")
    reversed_count = 0
    while True:
        async with m.uow.read() as conn:
            page = await store.live_openings(conn, run_id, m.batch_rows)
        if not page:
            break
        results = await m.ledger.post_reversals(
            f"{run_id}:reverse:{page[0]['record_no']}", run_id, [p["source_id"] for p in page]
        )
        failed = [res for res in results if res["status"] == "failed"]
        if failed:
            raise Problem(
                e.RUN_STATE_INVALID,
                f"{len(failed)} openings cannot be reversed: {failed[0].get('code')}",
                failed=[f["source_id"] for f in failed[:50]],
            )
        async with m.uow.begin() as tx:
            await store.mark_reversed(tx.conn, run_id, [int(p["record_no"]) for p in page])
        reversed_count += len(page)
        progress("reversal", 0, reversed_count)
    control = Control.from_json(run["control"]) if run["control"] else None
    if control is not None and run["controls_posted"]:
        await _post_controls(m, run_id, control, reverse=True)
    voided = await _void_coupons(m, run_id, progress)
    async with m.uow.begin() as tx:
        await store.release_holders(tx.conn, run_id)
    report = await build_report(m, run_id)
    if voided is not None:
        report["coupons_voided"] = voided
    async with m.uow.begin() as tx:
        await store.set_status(tx.conn, run_id, old=["reversing"], new="reversed", report=report)
    return report


async def _void_coupons(m: Migration, run_id: str, progress: Progress) -> dict[str, Any] | None:
    """Marketing voids the run's coupons still unused, in bounded calls; used (or locked) ones stay the user's
    and are counted. Resumable: voiding again touches only what is still available. None: no coupons."""
    async with m.uow.read() as conn:
        if not await store.has_coupons(conn, run_id):
            return None
    if m.marketing is None:
        raise Problem(e.MARKETING_UNAVAILABLE, "this run's coupons are in marketing: no marketing client here")
    while True:
        answer = await m.marketing.void_coupons(run_id, VOID_BATCH)
        progress("coupon voids", 0, int(answer["voided_total"]))
        if int(answer["remaining_count"]) == 0 or int(answer["voided_count"]) == 0:
            break
    async with m.uow.begin() as tx:
        await store.release_coupons(tx.conn, run_id)
    keys = ("voided_total", "used_count", "used_face_value_minor", "remaining_count")
    return {k: answer[k] for k in keys}


async def _post_controls(m: Migration, run_id: str, control: Control, *, reverse: bool) -> None:
    """The control totals into the run's suspense (before any opening), or out of it (after every reversal)."""
    # Money first, then credit (which takes from the escrow the money control put there); reversed in reverse.
    for key, (_, total) in sorted(control.balances.items(), reverse=reverse):
        currency, _, tag = key.partition(":")
        if total > 0:
            answer = await m.ledger.post_control(run_id, currency, total, reverse=reverse, credit=bool(tag))
            if answer["status"] not in ("created", "replayed"):
                raise Problem(e.RUN_STATE_INVALID, f"control transfer refused by the ledger: {answer.get('code')}")


async def _require(m: Migration, run_id: str) -> Any:
    async with m.uow.read() as conn:
        run = await store.get_run(conn, run_id)
    if run is None or run["platform"] != m.platform:
        raise Problem(e.RUN_NOT_FOUND, f"no migration run {run_id}")
    return run


async def report_of(m: Migration, run_id: str) -> tuple[Any, dict[str, Any]]:
    """The stored report once a run ended; a fresh one while it runs (progress: records_done per file)."""
    run = await _require(m, run_id)
    if run["report"] is not None and run["status"] in ("completed", "finalised", "reversed"):
        return run, dict(run["report"])
    return run, await build_report(m, run_id)


# --- helpers -----------------------------------------------------------------------------------------
def _read_control(path: Path | None) -> Control | None:
    if path is None:
        return None
    try:
        records = sources.control_records(path)
        if len(records) > CONTROL_RECORDS_MAX:
            raise ControlInvalid("too many control records")
        return parse_control(records)
    except (ControlInvalid, sources.SourceInvalid) as exc:
        raise Problem(e.CONTROL_INVALID, str(exc)) from None


def _fingerprint(mode: str, inspected: dict[r.Kind, sources.SourceFile], control: Control | None) -> str:
    parts: Iterable[str] = [
        mode,
        *(f"{k.value}:{s.sha256}" for k, s in sorted(inspected.items())),
        json.dumps(control.as_json() if control else None, sort_keys=True),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
