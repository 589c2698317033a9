"""Special-rate programmes (特殊费率): merchant profiles, the catalogue, eligibility, applications, savings.

Platform operators only (the gateway lists these prefixes as platform-only); writes are audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from libs.common.paging import KnownQueryOnly, PageLimit, cursor_query
from libs.common.web import UowDep
from services.routing.api.deps import ActorDep, RoutingContextDep
from services.routing.api.special_rate_schemas import (
    ApplicationApproveRequest,
    ApplicationCreateRequest,
    ApplicationListResponse,
    ApplicationRejectRequest,
    ApplicationResponse,
    ApplicationStatusName,
    CatalogueResponse,
    EligibilityListResponse,
    EligibilityResponse,
    MerchantProfilePutRequest,
    MerchantProfileResponse,
    MerchantSavingsResponse,
    ProgrammeResponse,
    SavingsResponse,
)
from services.routing.domain.special_rates import MerchantProfile
from services.routing.flows import special_rates as flow
from services.routing.store import special_rates as store

router = APIRouter(tags=["special rates"])


@router.put("/v1/merchant-profiles/{merchant_id}")
async def put_profile(
    merchant_id: str, body: MerchantProfilePutRequest, uow: UowDep, actor: ActorDep
) -> MerchantProfileResponse:
    profile = MerchantProfile(merchant_id, body.entity_type, body.industry_code)
    version = await flow.put_profile(uow, profile, actor=actor)
    return MerchantProfileResponse(
        merchant_id=merchant_id, entity_type=profile.entity_type, industry_code=profile.industry_code, version=version
    )


@router.get("/v1/merchant-profiles/{merchant_id}")
async def get_profile(merchant_id: str, uow: UowDep) -> MerchantProfileResponse:
    profile = await flow.profile(uow, merchant_id)
    async with uow.read() as conn:
        version = await store.profile_version(conn, merchant_id)
    return MerchantProfileResponse(
        merchant_id=merchant_id, entity_type=profile.entity_type, industry_code=profile.industry_code, version=version
    )


@router.get("/v1/merchant-profiles/{merchant_id}/special-rate-eligibility", dependencies=[KnownQueryOnly])
async def get_eligibility(merchant_id: str, context: RoutingContextDep, uow: UowDep) -> EligibilityListResponse:
    checks = await flow.merchant_eligibility(context.settings, uow, merchant_id, at=datetime.now(UTC))
    return EligibilityListResponse(merchant_id=merchant_id, data=[EligibilityResponse.of(c) for c in checks])


@router.get("/v1/special-rate-programmes", dependencies=[KnownQueryOnly])
async def list_programmes(context: RoutingContextDep) -> CatalogueResponse:
    catalogue = flow.catalogue(context.settings)
    return CatalogueResponse(
        catalogue_version=catalogue.version,
        example=catalogue.example,
        notice=catalogue.notice,
        data=[ProgrammeResponse.of(p) for p in catalogue.programmes],
    )


@router.get("/v1/special-rate-programmes/{programme_id}")
async def get_programme(programme_id: str, context: RoutingContextDep) -> ProgrammeResponse:
    return ProgrammeResponse.of(flow.programme(context.settings, programme_id))


@router.post("/v1/special-rate-applications", status_code=201)
async def create_application(
    body: ApplicationCreateRequest, context: RoutingContextDep, uow: UowDep, actor: ActorDep
) -> ApplicationResponse:
    application = await flow.create_application(
        context.settings,
        uow,
        merchant_id=body.merchant_id,
        programme_id=body.programme_id,
        documents=body.documents,
        actor=actor,
        at=datetime.now(UTC),
    )
    return ApplicationResponse.of(application)


@router.get("/v1/special-rate-applications", dependencies=[KnownQueryOnly])
async def list_applications(
    uow: UowDep,
    limit: PageLimit,
    merchant_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[ApplicationStatusName | None, Query()] = None,
    cursor: Annotated[str | None, cursor_query(r"^spa_[0-9a-z]+$")] = None,
) -> ApplicationListResponse:
    async with uow.read() as conn:
        rows = await store.list_applications(
            conn, merchant_id=merchant_id, status=status, after=cursor, limit=limit + 1
        )
    return ApplicationListResponse.of(rows, limit, item=ApplicationResponse.of, cursor_of=lambda a: a.application_id)


@router.get("/v1/special-rate-applications/{application_id}")
async def get_application(application_id: str, uow: UowDep) -> ApplicationResponse:
    async with uow.read() as conn:
        return ApplicationResponse.of(await store.get_application(conn, application_id))


@router.post("/v1/special-rate-applications/{application_id}/submit")
async def submit_application(
    application_id: str, context: RoutingContextDep, uow: UowDep, actor: ActorDep
) -> ApplicationResponse:
    return ApplicationResponse.of(await flow.submit(context.settings, uow, application_id, actor=actor))


@router.post("/v1/special-rate-applications/{application_id}/approve")
async def approve_application(
    application_id: str, body: ApplicationApproveRequest, context: RoutingContextDep, uow: UowDep, actor: ActorDep
) -> ApplicationResponse:
    now = datetime.now(UTC)
    return ApplicationResponse.of(
        await flow.approve(
            context.settings, uow, application_id, effective_from=body.effective_from or now, actor=actor, now=now
        )
    )


@router.post("/v1/special-rate-applications/{application_id}/reject")
async def reject_application(
    application_id: str, body: ApplicationRejectRequest, uow: UowDep, actor: ActorDep
) -> ApplicationResponse:
    return ApplicationResponse.of(await flow.reject(uow, application_id, reason=body.reason, actor=actor))


@router.get("/v1/special-rate-savings")
async def get_savings(context: RoutingContextDep, uow: UowDep, merchant_id: str | None = None) -> SavingsResponse:
    """The last 30 days: what the fees were, what they would be under each eligible programme."""
    settings = context.settings
    report = await flow.savings(settings, uow, merchant_id=merchant_id, now=datetime.now(UTC))
    return SavingsResponse(
        since=report.since,
        until=report.until,
        currency=report.currency,
        example_catalogue=flow.catalogue(settings).example,
        payment_count=sum(m.payment_count for m in report.merchants),
        volume_minor=sum(m.volume_minor for m in report.merchants),
        fees_minor=sum(m.fees_minor for m in report.merchants),
        best_savings_minor=sum(m.best_savings_minor for m in report.merchants),
        merchants=[MerchantSavingsResponse.of(m) for m in report.merchants],
        merchants_without_profile=report.merchants_without_profile,
    )
