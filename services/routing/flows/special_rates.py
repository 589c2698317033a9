"""Special-rate use cases: eligibility, applications and their transitions, the savings projection.

An approval is where a programme meets routing: in the same transaction as the status change, it writes
one merchant fee rate per route of the programme's channel that the merchant has a contract on, in force
from the approval's `effective_from` for the programme's term. Merchant rates beat route and industry
rates (domain/fees.py), so from that instant every decision quotes the programme's rate and says so
(`fee.rate_id` is one of the application's `rate_ids`, `fee.basis` is `merchant`). A clash with another
merchant rate in that period is a 409 `fee_rate_overlap` and nothing changes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from libs.common.db import Tx, UnitOfWork
from libs.common.errors import Problem
from libs.common.ids import new_id
from services.routing.config import Settings
from services.routing.domain import errors as e
from services.routing.domain.special_rates import (
    DOCUMENT_RE,
    PROJECTION_CURRENCY,
    PROJECTION_WINDOW_DAYS,
    Application,
    ApplicationStatus,
    Catalogue,
    Eligibility,
    MerchantProfile,
    MerchantProjection,
    Programme,
    TransitionRefused,
    eligibility,
    eligible_programmes,
    parse_catalogue,
    project_merchant,
)
from services.routing.store import fee_rates as fee_rate_store
from services.routing.store import special_rates as store

EFFECTIVE_FROM_LEEWAY = timedelta(minutes=5)  # an operator's "now" typed a moment ago is still accepted
EXAMPLE_CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "data" / "special_rate_programmes.json"


@functools.cache
def _load(path: str) -> Catalogue:
    return parse_catalogue(Path(path).read_text(encoding="utf-8"))


def catalogue(settings: Settings) -> Catalogue:
    """The configured catalogue (read and checked once per process), else the shipped EXAMPLE one."""
    return _load(settings.special_rate_catalogue_path or str(EXAMPLE_CATALOGUE_PATH))


def programme(settings: Settings, programme_id: str) -> Programme:
    found = catalogue(settings).get(programme_id)
    if found is None:
        raise Problem(e.SPECIAL_RATE_PROGRAMME_NOT_FOUND, f"no special-rate programme {programme_id!r}")
    return found


async def profile(uow: UnitOfWork, merchant_id: str) -> MerchantProfile:
    async with uow.read() as conn:
        found = await store.get_profile(conn, merchant_id)
    if found is None:
        raise Problem(e.MERCHANT_PROFILE_NOT_FOUND, f"merchant {merchant_id!r} has no profile")
    return found


async def put_profile(uow: UnitOfWork, new: MerchantProfile, *, actor: str) -> int:
    e.raise_if_invalid(e.MERCHANT_PROFILE_INVALID, new.validate())
    async with uow.begin() as tx:
        return await store.put_profile(tx, new, actor=actor)


async def merchant_eligibility(
    settings: Settings, uow: UnitOfWork, merchant_id: str, *, at: datetime
) -> list[Eligibility]:
    found = await profile(uow, merchant_id)
    return [eligibility(found, p, at=at) for p in catalogue(settings).programmes]


async def create_application(
    settings: Settings,
    uow: UnitOfWork,
    *,
    merchant_id: str,
    programme_id: str,
    documents: list[str],
    actor: str,
    at: datetime,
) -> Application:
    chosen = programme(settings, programme_id)
    unreadable = [d for d in documents if not DOCUMENT_RE.match(d)]
    if unreadable:
        raise Problem(
            e.SPECIAL_RATE_APPLICATION_INVALID,
            "document names are lowercase words joined by "
            f"underscores (such as {', '.join(chosen.required_documents[:2])})",
        )
    check = eligibility(await profile(uow, merchant_id), chosen, at=at)
    if not check.eligible:
        raise Problem(e.SPECIAL_RATE_NOT_ELIGIBLE, "; ".join(check.reasons), reasons=list(check.reasons))
    draft = Application(
        application_id=new_id("spa"),
        merchant_id=merchant_id,
        programme_id=programme_id,
        status=ApplicationStatus.DRAFT,
        documents=tuple(dict.fromkeys(documents)),
    )
    async with uow.begin() as tx:
        return await store.insert_application(tx, draft, actor=actor)


async def submit(settings: Settings, uow: UnitOfWork, application_id: str, *, actor: str) -> Application:
    async with uow.begin() as tx:
        old = await store.get_application(tx.conn, application_id, for_update=True)
        chosen = programme(settings, old.programme_id)
        missing = old.missing_documents(chosen)
        if missing and old.status is ApplicationStatus.DRAFT:
            raise Problem(
                e.SPECIAL_RATE_DOCUMENTS_MISSING, f"missing documents: {', '.join(missing)}", missing_documents=missing
            )
        return await _transition(tx, old, lambda a: a.submit(chosen), actor=actor)


async def approve(
    settings: Settings, uow: UnitOfWork, application_id: str, *, effective_from: datetime, actor: str, now: datetime
) -> Application:
    if effective_from < now - EFFECTIVE_FROM_LEEWAY:
        raise Problem(
            e.SPECIAL_RATE_APPLICATION_INVALID,
            "effective_from is in the past: a rate is never put in force for payments already quoted",
        )
    async with uow.begin() as tx:
        old = await store.get_application(tx.conn, application_id, for_update=True)
        chosen = programme(settings, old.programme_id)
        if old.status is not ApplicationStatus.SUBMITTED:  # before any rate is written
            return await _transition(
                tx, old, lambda a: a.approve(chosen, effective_from=effective_from, rate_ids=()), actor=actor
            )
        route_ids = await store.contracted_route_ids(tx.conn, old.merchant_id, chosen.method)
        if not route_ids:
            raise Problem(
                e.SPECIAL_RATE_NO_CONTRACTED_ROUTE,
                f"merchant {old.merchant_id} has no enabled contract on a {chosen.method} route",
            )
        approved = old.approve(chosen, effective_from=effective_from, rate_ids=())
        rate_ids = []
        for route_id in route_ids:
            rate = chosen.fee_rate(
                route_id=route_id,
                merchant_id=old.merchant_id,
                rate_id=new_id("fr"),
                valid_from=effective_from,
                valid_until=approved.effective_until,
            )
            stored = await fee_rate_store.create_fee_rate(tx, rate, actor=f"{actor} (application {application_id})")
            rate_ids.append(stored.rate.rate_id)
        return await _transition(
            tx, old, lambda a: a.approve(chosen, effective_from=effective_from, rate_ids=rate_ids), actor=actor
        )


async def reject(uow: UnitOfWork, application_id: str, *, reason: str, actor: str) -> Application:
    async with uow.begin() as tx:
        old = await store.get_application(tx.conn, application_id, for_update=True)
        return await _transition(tx, old, lambda a: a.reject(reason), actor=actor)


async def _transition(
    tx: Tx, old: Application, change: Callable[[Application], Application], *, actor: str
) -> Application:
    """The named transition on the domain object, then its compare-and-set; a refused one is a 409."""
    try:
        new = change(old)
    except TransitionRefused as exc:
        raise Problem(e.SPECIAL_RATE_APPLICATION_STATE_CONFLICT, str(exc), application_status=old.status.value) from exc
    return await store.transition_application(tx, old, new, actor=actor)


@dataclass(frozen=True, slots=True)
class SavingsReport:
    since: datetime
    until: datetime
    currency: str
    merchants: list[MerchantProjection]
    merchants_without_profile: list[str]


async def savings(settings: Settings, uow: UnitOfWork, *, merchant_id: str | None, now: datetime) -> SavingsReport:
    """The last 30 days of succeeded payments (as routing recorded them), per merchant with a profile:
    the fees paid against each programme the merchant is eligible for today."""
    since = now - timedelta(days=PROJECTION_WINDOW_DAYS)
    async with uow.read() as conn:
        if merchant_id is not None and await store.get_profile(conn, merchant_id) is None:
            raise Problem(e.MERCHANT_PROFILE_NOT_FOUND, f"merchant {merchant_id!r} has no profile")
        payments = await store.payment_fees(
            conn, since=since, until=now, currency=PROJECTION_CURRENCY, merchant_id=merchant_id
        )
        merchant_ids = {p.merchant_id for p in payments} | ({merchant_id} if merchant_id else set())
        profiles = await store.profiles_of(conn, merchant_ids)
    known = catalogue(settings)
    projections = [
        project_merchant(m, payments, eligible_programmes(profiles[m], known, at=now)) for m in sorted(profiles)
    ]
    return SavingsReport(since, now, PROJECTION_CURRENCY, projections, sorted(merchant_ids - set(profiles)))
