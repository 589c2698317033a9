"""Per-campaign figures, computed from the coupons and redemptions themselves (no second set of counters
to drift): issued (all coupons), claimed online, bulk-issued, redeemed, and the cost by funding party net
of refunds and undos."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.marketing.store.tables import coupons, redemptions

COST_STATES = ("used", "refunded")


async def campaign_stats(conn: AsyncConnection, campaign_id: str) -> dict[str, Any]:
    c = coupons.c
    issued = (
        await conn.execute(
            select(
                func.count(),
                func.count().filter(c.source == "claim"),
                func.count().filter(c.source == "bulk"),
            ).where(c.campaign_id == campaign_id)
        )
    ).one()
    r = redemptions.c
    used = r.status.in_(COST_STATES)
    spent = (
        await conn.execute(
            select(
                func.count().filter(used),
                func.coalesce(func.sum(case((used, r.platform_minor - r.reversed_platform_minor), else_=0)), 0),
                func.coalesce(func.sum(case((used, r.merchant_minor - r.reversed_merchant_minor), else_=0)), 0),
                func.coalesce(func.sum(case((used, r.payable_minor - r.refunded_minor), else_=0)), 0),
            ).where(r.campaign_id == campaign_id)
        )
    ).one()
    platform, merchant = int(spent[1]), int(spent[2])
    return {
        "campaign_id": campaign_id,
        "issued_count": int(issued[0]),
        "claimed_count": int(issued[1]),
        "bulk_issued_count": int(issued[2]),
        "redeemed_count": int(spent[0]),
        "cost": {"platform_minor": platform, "merchant_minor": merchant, "total_minor": platform + merchant},
        "paid_volume_minor": int(spent[3]),
    }
