"""Merchant profiles, special-rate applications and the succeeded payments' fees (domain/special_rates.py).

Profiles and applications are configuration: each write is audited (`config_audit`) like routes and
rates. An application's status changes by compare-and-set on its old status and version, so two
operators approving at once change it once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from libs.common.errors import Problem
from services.routing.domain import errors as e
from services.routing.domain.special_rates import Application, ApplicationStatus, MerchantProfile, PaymentFee
from services.routing.store.audit import current_config_version, write_audit
from services.routing.store.tables import (
    channel_routes,
    merchant_contracts,
    merchant_payment_fees,
    merchant_profiles,
    special_rate_applications,
)

PAYMENT_FEES_RETENTION_DAYS = 40  # the projection reads 30 days; a margin for late events
PAYMENT_FEES_READ_MAX = 200_000  # one projection reads at most this many payments (a bound, not a page)


# --- profiles ---------------------------------------------------------------------------------------


async def get_profile(conn: AsyncConnection, merchant_id: str) -> MerchantProfile | None:
    row = (await conn.execute(select(merchant_profiles).where(merchant_profiles.c.merchant_id == merchant_id))).first()
    return None if row is None else MerchantProfile(row.merchant_id, row.entity_type, row.industry_code)


async def profile_version(conn: AsyncConnection, merchant_id: str) -> int:
    value = await conn.scalar(select(merchant_profiles.c.version).where(merchant_profiles.c.merchant_id == merchant_id))
    return int(value or 0)


async def put_profile(tx: Tx, profile: MerchantProfile, *, actor: str) -> int:
    """Create or replace the profile; returns its new version."""
    statement = insert(merchant_profiles).values(
        merchant_id=profile.merchant_id,
        entity_type=profile.entity_type,
        industry_code=profile.industry_code,
        version=1,
    )
    upsert = statement.on_conflict_do_update(
        index_elements=[merchant_profiles.c.merchant_id],
        set_={
            "entity_type": statement.excluded.entity_type,
            "industry_code": statement.excluded.industry_code,
            "version": merchant_profiles.c.version + 1,
            "updated_at": func.now(),
        },
    ).returning(merchant_profiles.c.version)
    version = int((await tx.conn.execute(upsert)).scalar_one())
    await write_audit(
        tx.conn,
        resource_type="merchant_profile",
        resource_id=profile.merchant_id,
        action="created" if version == 1 else "updated",
        actor=actor,
        version=version,
        config_version=await current_config_version(tx.conn),
        before=None,
        after={"entity_type": profile.entity_type, "industry_code": profile.industry_code},
    )
    return version


# --- applications -----------------------------------------------------------------------------------


def _application(row: Any) -> Application:
    return Application(
        application_id=row.application_id,
        merchant_id=row.merchant_id,
        programme_id=row.programme_id,
        status=ApplicationStatus(row.status),
        documents=tuple(row.documents),
        effective_from=row.effective_from,
        effective_until=row.effective_until,
        rejection_reason=row.rejection_reason,
        rate_ids=tuple(row.rate_ids),
        version=row.version,
    )


def _values(application: Application) -> dict[str, Any]:
    return {
        "status": application.status.value,
        "documents": list(application.documents),
        "effective_from": application.effective_from,
        "effective_until": application.effective_until,
        "rejection_reason": application.rejection_reason,
        "rate_ids": list(application.rate_ids),
        "version": application.version,
    }


def application_view(application: Application) -> dict[str, Any]:
    return {
        "application_id": application.application_id,
        "merchant_id": application.merchant_id,
        "programme_id": application.programme_id,
        **_values(application),
    }


async def get_application(conn: AsyncConnection, application_id: str, *, for_update: bool = False) -> Application:
    query = select(special_rate_applications).where(special_rate_applications.c.application_id == application_id)
    row = (await conn.execute(query.with_for_update() if for_update else query)).first()
    if row is None:
        raise Problem(e.SPECIAL_RATE_APPLICATION_NOT_FOUND, f"no special-rate application {application_id!r}")
    return _application(row)


async def list_applications(
    conn: AsyncConnection, *, merchant_id: str | None, status: str | None, after: str | None, limit: int
) -> list[Application]:
    query = select(special_rate_applications).order_by(special_rate_applications.c.application_id).limit(limit)
    if merchant_id:
        query = query.where(special_rate_applications.c.merchant_id == merchant_id)
    if status:
        query = query.where(special_rate_applications.c.status == status)
    if after:
        query = query.where(special_rate_applications.c.application_id > after)
    return [_application(r) for r in (await conn.execute(query)).all()]


async def insert_application(tx: Tx, application: Application, *, actor: str) -> Application:
    await tx.conn.execute(
        insert(special_rate_applications).values(
            application_id=application.application_id,
            merchant_id=application.merchant_id,
            programme_id=application.programme_id,
            **_values(application),
        )
    )
    await _audit(tx, application, action="created", actor=actor, before=None)
    return application


async def transition_application(tx: Tx, old: Application, new: Application, *, actor: str) -> Application:
    """Compare-and-set on the old status and version: a concurrent change makes this one a 409."""
    result = await tx.conn.execute(
        update(special_rate_applications)
        .where(
            and_(
                special_rate_applications.c.application_id == old.application_id,
                special_rate_applications.c.status == old.status.value,
                special_rate_applications.c.version == old.version,
            )
        )
        .values(**_values(new), updated_at=func.now())
    )
    if result.rowcount != 1:
        raise Problem(
            e.SPECIAL_RATE_APPLICATION_STATE_CONFLICT,
            f"application {old.application_id} was changed meanwhile; reload it",
        )
    await _audit(tx, new, action=new.status.value, actor=actor, before=application_view(old))
    return new


async def _audit(tx: Tx, application: Application, *, action: str, actor: str, before: dict[str, Any] | None) -> None:
    after = application_view(application)
    for key in ("effective_from", "effective_until"):
        after[key] = after[key].isoformat() if after[key] else None
        if before is not None:
            before[key] = before[key].isoformat() if before[key] else None
    await write_audit(
        tx.conn,
        resource_type="special_rate_application",
        resource_id=application.application_id,
        action=action,
        actor=actor,
        version=application.version,
        config_version=await current_config_version(tx.conn),
        before=before,
        after=after,
    )


async def contracted_route_ids(conn: AsyncConnection, merchant_id: str, method: str) -> list[str]:
    """Enabled routes of `method` on which the merchant has an enabled contract: where a rate matters."""
    query = (
        select(channel_routes.c.route_id)
        .join(merchant_contracts, merchant_contracts.c.route_id == channel_routes.c.route_id)
        .where(
            merchant_contracts.c.merchant_id == merchant_id,
            merchant_contracts.c.enabled.is_(True),
            channel_routes.c.method == method,
            channel_routes.c.enabled.is_(True),
        )
        .order_by(channel_routes.c.route_id)
    )
    return list((await conn.execute(query)).scalars())


# --- succeeded payments' fees -----------------------------------------------------------------------


# One row per payment, whatever the redeliveries; the route's method is fixed at the time (read inside the insert:
# an unknown route writes nothing). Built once: SQLAlchemy's compiled cache serves it.
_RECORD_FEES = text(
    """
INSERT INTO merchant_payment_fees (payment_id, merchant_id, route_id, currency, amount_minor, fee_minor,
    succeeded_at, method)
SELECT f.payment_id, f.merchant_id, f.route_id, f.currency, f.amount_minor, f.fee_minor, f.succeeded_at, r.method
FROM unnest(CAST(:payment_id AS text[]), CAST(:merchant_id AS text[]), CAST(:route_id AS text[]),
    CAST(:currency AS text[]), CAST(:amount_minor AS bigint[]), CAST(:fee_minor AS bigint[]),
    CAST(:succeeded_at AS timestamptz[]))
    AS f (payment_id, merchant_id, route_id, currency, amount_minor, fee_minor, succeeded_at)
JOIN channel_routes AS r ON r.route_id = f.route_id
ON CONFLICT (payment_id) DO NOTHING
"""
)
_FEE_FIELDS = ("payment_id", "merchant_id", "route_id", "currency", "amount_minor", "fee_minor", "succeeded_at")


async def record_payment_fees(conn: AsyncConnection, fees: Sequence[Mapping[str, Any]]) -> int:
    """Succeeded payments' fees (`payment_id`, `merchant_id`, `route_id`, `currency`, `amount_minor`, `fee_minor`,
    `succeeded_at` each) in one statement; returns how many rows were new."""
    result = await conn.execute(_RECORD_FEES, {name: [fee[name] for fee in fees] for name in _FEE_FIELDS})
    return int(result.rowcount)


async def payment_fees(
    conn: AsyncConnection, *, since: datetime, until: datetime, currency: str, merchant_id: str | None
) -> list[PaymentFee]:
    t = merchant_payment_fees
    query = (
        select(t.c.payment_id, t.c.merchant_id, t.c.method, t.c.amount_minor, t.c.fee_minor)
        .where(t.c.succeeded_at >= since, t.c.succeeded_at < until, t.c.currency == currency)
        .order_by(t.c.succeeded_at)
        .limit(PAYMENT_FEES_READ_MAX)
    )
    if merchant_id:
        query = query.where(t.c.merchant_id == merchant_id)
    rows = (await conn.execute(query)).all()
    return [PaymentFee(r.payment_id, r.merchant_id, r.method, r.amount_minor, r.fee_minor) for r in rows]


async def profiles_of(conn: AsyncConnection, merchant_ids: set[str]) -> dict[str, MerchantProfile]:
    rows = await conn.execute(select(merchant_profiles).where(merchant_profiles.c.merchant_id.in_(merchant_ids)))
    return {r.merchant_id: MerchantProfile(r.merchant_id, r.entity_type, r.industry_code) for r in rows}


async def prune_payment_fees(conn: AsyncConnection, *, now: datetime) -> None:
    cutoff = now - timedelta(days=PAYMENT_FEES_RETENTION_DAYS)
    await conn.execute(delete(merchant_payment_fees).where(merchant_payment_fees.c.succeeded_at < cutoff))
