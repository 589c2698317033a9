"""Importing a platform's existing, unused coupons (services/migration), and voiding them on reversal.

A migration run's coupons live in one campaign of that run (`cmp_mig_…`), in one stock per distinct
rule (currency, face value, threshold, applicability: `stk_mig_…`), because a redemption prices a coupon
by its stock's rules. The stocks are created `ended` (nobody can claim from them) with a budget equal to
what was imported, so campaign stats and costs keep working unchanged. Ids are derived from the run and
the source id, so a batch sent again (a resumed run) finds its coupons and answers `duplicate`: the
import is idempotent by (run id, source id). The user's existing code is kept as it is (unique).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from services.marketing.store.tables import campaigns, coupon_stocks, coupons

SOURCE = "migration"
VOIDED = "voided"


@dataclass(frozen=True, slots=True)
class ImportedCoupon:
    """One coupon as the source platform had it (the route checked the shapes)."""

    source_id: str
    user_id: str
    code: str
    face_value_minor: int
    currency: str
    threshold_minor: int
    valid_from: datetime
    valid_until: datetime
    merchant_ids: list[str]
    store_ids: list[str]
    scenes: list[str]
    payment_methods: list[str]


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def campaign_id_of(run_id: str) -> str:
    return f"cmp_mig_{_digest('campaign', run_id)}"


def coupon_id_of(run_id: str, source_id: str) -> str:
    return f"cpn_mig_{_digest('coupon', run_id, source_id)}"


def _stock_key(c: ImportedCoupon) -> tuple[Any, ...]:
    return (
        c.currency,
        c.face_value_minor,
        c.threshold_minor,
        sorted(c.merchant_ids),
        sorted(c.store_ids),
        sorted(c.scenes),
        sorted(c.payment_methods),
    )


def stock_id_of(run_id: str, c: ImportedCoupon) -> str:
    return f"stk_mig_{_digest('stock', run_id, *_stock_key(c))}"


@dataclass(frozen=True, slots=True)
class Result:
    source_id: str
    status: Literal["created", "duplicate", "rejected"]
    coupon_id: str | None = None
    reason: str | None = None
    detail: str | None = None


async def import_coupons(tx: Tx, run_id: str, items: Sequence[ImportedCoupon], now: datetime) -> list[Result]:
    """One result per item, in order. Rejections change nothing; the rest is written in this transaction."""
    conn = tx.conn
    ids = [coupon_id_of(run_id, c.source_id) for c in items]
    existing = {
        r["coupon_id"]: r
        for r in (
            await conn.execute(
                select(coupons.c.coupon_id, coupons.c.user_id, coupons.c.code).where(coupons.c.coupon_id.in_(ids))
            )
        ).mappings()
    }
    taken_codes = set(
        (
            await conn.execute(
                select(coupons.c.code).where(
                    coupons.c.code.in_([c.code for c in items]), coupons.c.coupon_id.not_in(ids)
                )
            )
        ).scalars()
    )
    results: list[Result | None] = [None] * len(items)
    todo: list[tuple[int, ImportedCoupon, str]] = []
    seen_sources: set[str] = set()
    for i, (c, coupon_id) in enumerate(zip(items, ids, strict=True)):
        reason, detail = _refusal(c, now, seen_sources, taken_codes)
        seen_sources.add(c.source_id)
        if coupon_id in existing and reason != "source_id_repeated":
            same = existing[coupon_id]["user_id"] == c.user_id and existing[coupon_id]["code"] == c.code
            results[i] = (
                Result(c.source_id, "duplicate", coupon_id)
                if same
                else Result(
                    c.source_id,
                    "rejected",
                    reason="source_id_conflict",
                    detail="this run imported this source id already, for another user or code",
                )
            )
        elif reason is not None:
            results[i] = Result(c.source_id, "rejected", reason=reason, detail=detail)
        else:
            taken_codes.add(c.code)
            todo.append((i, c, coupon_id))
    if todo:
        await _ensure_campaign_and_stocks(conn, run_id, [c for _, c, _ in todo])
        created = set(
            (
                await conn.execute(
                    insert(coupons)
                    .values([_coupon_values(run_id, c, coupon_id, now) for _, c, coupon_id in todo])
                    .on_conflict_do_nothing()
                    .returning(coupons.c.coupon_id)
                )
            ).scalars()
        )
        budget: dict[str, tuple[int, int]] = {}
        for i, c, coupon_id in todo:
            if coupon_id in created:
                results[i] = Result(c.source_id, "created", coupon_id)
                count, total = budget.get(stock_id_of(run_id, c), (0, 0))
                budget[stock_id_of(run_id, c)] = (count + 1, total + c.face_value_minor)
            else:  # written meanwhile by another request of the same run, or the code was taken meanwhile
                results[i] = Result(c.source_id, "rejected", reason="code_taken", detail="another coupon has this code")
        for stock_id, (count, total) in sorted(budget.items()):
            s = coupon_stocks.c
            await conn.execute(
                update(coupon_stocks)
                .where(s.stock_id == stock_id)
                .values(budget_count=s.budget_count + count, budget_minor=s.budget_minor + total, updated_at=func.now())
            )
    return [r for r in results if r is not None]


def _refusal(c: ImportedCoupon, now: datetime, seen: set[str], taken_codes: set[str]) -> tuple[str | None, str]:
    if c.source_id in seen:
        return "source_id_repeated", "the same source id appears earlier in this batch"
    if c.valid_from.tzinfo is None or c.valid_until.tzinfo is None:
        return "validity_invalid", "valid_from and valid_until need a time zone"
    if c.valid_until <= c.valid_from:
        return "validity_invalid", "valid_until is not after valid_from"
    if c.valid_until <= now:
        return "coupon_expired", "the coupon's validity ended already"
    if c.code in taken_codes:
        return "code_taken", "another coupon has this code"
    return None, ""


async def _ensure_campaign_and_stocks(conn: AsyncConnection, run_id: str, items: Sequence[ImportedCoupon]) -> None:
    campaign_id = campaign_id_of(run_id)
    await conn.execute(
        insert(campaigns)
        .values(
            campaign_id=campaign_id,
            owner_merchant_id=None,
            name=f"Migrated coupons ({run_id})"[:128],
            description=f"Unused coupons of the platform's users, imported by migration run {run_id}",
        )
        .on_conflict_do_nothing()
    )
    stocks: dict[str, ImportedCoupon] = {stock_id_of(run_id, c): c for c in items}
    rows = [
        {
            "stock_id": stock_id,
            "campaign_id": campaign_id,
            "owner_merchant_id": None,
            "name": f"Migrated {c.currency} {c.face_value_minor} off {c.threshold_minor}",
            "status": "ended",
            "discount_kind": "fixed",
            "currency": c.currency,
            "amount_off_minor": c.face_value_minor,
            "percent_off_bps": None,
            "discount_cap_minor": None,
            "threshold_minor": c.threshold_minor,
            "face_value_minor": c.face_value_minor,
            "valid_from": None,
            "valid_until": None,
            "valid_days_after_claim": None,
            "merchant_ids": sorted(c.merchant_ids),
            "store_ids": sorted(c.store_ids),
            "scenes": sorted(c.scenes),
            "payment_methods": sorted(c.payment_methods),
            "funding_party": "platform",
            "platform_share_bps": 10_000,
            "refund_policy": "return_on_full_refund",
            "budget_count": 0,
            "budget_minor": 0,
            "remaining_count": 0,
            "remaining_budget_minor": 0,
            "per_user_limit": 1,
        }
        for stock_id, c in sorted(stocks.items())
    ]
    await conn.execute(insert(coupon_stocks).values(rows).on_conflict_do_nothing())


def _coupon_values(run_id: str, c: ImportedCoupon, coupon_id: str, now: datetime) -> dict[str, Any]:
    return {
        "coupon_id": coupon_id,
        "stock_id": stock_id_of(run_id, c),
        "campaign_id": campaign_id_of(run_id),
        "user_id": c.user_id,
        "request_id": f"{SOURCE}:{run_id}:{c.source_id}",
        "source": SOURCE,
        "code": c.code,
        "status": "available",
        "face_value_minor": c.face_value_minor,
        "currency": c.currency,
        "valid_from": c.valid_from,
        "valid_until": c.valid_until,
        "claimed_at": now,
        "updated_at": now,
    }


@dataclass(frozen=True, slots=True)
class VoidOutcome:
    voided_count: int
    voided_total: int
    used_count: int
    used_face_value_minor: dict[str, int]
    remaining_count: int


async def void_coupons(tx: Tx, run_id: str, limit: int) -> VoidOutcome:
    """Voids up to `limit` of the run's coupons still available (a coupon locked by a payment or used is
    the user's now and stays: it is counted, in number and face value, for the run's reversal report)."""
    conn = tx.conn
    stock_ids = list(
        (
            await conn.execute(
                select(coupon_stocks.c.stock_id).where(coupon_stocks.c.campaign_id == campaign_id_of(run_id))
            )
        ).scalars()
    )
    c = coupons.c
    batch = list(
        (
            await conn.execute(
                select(c.coupon_id)
                .where(c.stock_id.in_(stock_ids), c.status == "available")
                .order_by(c.coupon_id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    voided = (
        (
            await conn.execute(
                update(coupons)
                .where(c.coupon_id.in_(batch), c.status == "available")
                .values(status=VOIDED, updated_at=func.now())
            )
        ).rowcount
        if batch
        else 0
    )
    counts = (
        await conn.execute(
            select(c.status, c.currency, func.count(), func.coalesce(func.sum(c.face_value_minor), 0))
            .where(c.stock_id.in_(stock_ids))
            .group_by(c.status, c.currency)
        )
    ).all()
    by_status: dict[str, int] = {}
    used_value: dict[str, int] = {}
    for status, currency, n, total in counts:
        by_status[status] = by_status.get(status, 0) + int(n)
        if status in ("used", "locked"):
            used_value[currency] = used_value.get(currency, 0) + int(total)
    return VoidOutcome(
        voided_count=int(voided or 0),
        voided_total=by_status.get(VOIDED, 0),
        used_count=by_status.get("used", 0) + by_status.get("locked", 0),
        used_face_value_minor=used_value,
        remaining_count=by_status.get("available", 0),
    )
