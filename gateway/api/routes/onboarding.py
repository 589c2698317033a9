"""Merchant onboarding in one call, and merchant suspension (platform admin keys; docs/onboarding.md).

`POST /merchant-onboardings` needs an `Idempotency-Key`: the same key and body answer the same onboarding
(with the same credentials), another body is 409 `idempotency_key_reused`. It is recorded by the flow
itself, not by the gateway's idempotency records, which would store the secrets in a response body.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from gateway.api.deps import ContextDep, IdentitiesDep, PlatformDep, get_gatekeeper
from gateway.api.onboarding_schemas import (
    MerchantStatusResponse,
    OnboardingCreateRequest,
    OnboardingResponse,
    PartnerTemplateRequest,
    PartnerTemplateResponse,
    SuspensionRequest,
)
from gateway.domain import idempotency
from gateway.domain import onboarding as rules
from gateway.domain.access import Principal
from gateway.flows import merchant_status
from gateway.flows.onboarding import OnboardingFlow
from libs.common.paging import KnownQueryOnly, ListPage, PageLimit, cursor_query

router = APIRouter(prefix="/v1/platform", tags=["platform"])
ONBOARDING_CURSOR = r"^onb_[0-9a-f]{32}$"


def operator(permission: str) -> Any:
    """The admin key, or an operator's console session with `permission` (the operator console's KYC queue and
    suspend/resume buttons call these routes directly); authenticated, nonce-checked, counted as an admin call."""

    async def principal_of(request: Request) -> Principal:
        gatekeeper = await get_gatekeeper(request)
        principal = await gatekeeper.admit(request, await gatekeeper.read_body(request), "admin")
        rules.require_operator(principal, permission)
        return principal

    return Depends(principal_of)


Reader = Annotated[Principal, operator(rules.READ_PERMISSION)]
Reviewer = Annotated[Principal, operator(rules.RETRY_PERMISSION)]
Manager = Annotated[Principal, operator(rules.SUSPEND_PERMISSION)]


async def get_onboarding(context: ContextDep) -> OnboardingFlow:
    return context.onboarding


OnboardingDep = Annotated[OnboardingFlow, Depends(get_onboarding)]


class OnboardingListResponse(ListPage[OnboardingResponse]):
    pass


class MerchantStatusWithChanges(MerchantStatusResponse):
    changes: list[dict[str, Any]]


class PartnerTemplateListResponse(ListPage[PartnerTemplateResponse]):
    pass


PartnerChannel = Literal["wechatpay", "alipay"]
Mode = Literal["test", "live"]


@router.post("/merchant-onboardings", status_code=status.HTTP_201_CREATED)
async def create_onboarding(
    body: OnboardingCreateRequest,
    platform: PlatformDep,
    flow: OnboardingDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> OnboardingResponse:
    """201 with the merchant's API key and webhook secret (the one webhooks are signed with) and every step's
    status; `status: processing` when a step is still running (the worker finishes it: `GET` to follow)."""
    key = idempotency.validate_key(idempotency_key)
    view, created = await flow.create(platform, key, body.model_dump(mode="json", exclude_none=True))
    if not created:
        response.status_code = status.HTTP_200_OK
        response.headers[idempotency.REPLAYED_HEADER] = "true"
    return OnboardingResponse.model_validate(view)


@router.get("/merchant-onboardings", dependencies=[KnownQueryOnly])
async def list_onboardings(
    platform: Reader,
    flow: OnboardingDep,
    limit: PageLimit,
    status: Annotated[Literal["processing", "active", "rejected"] | None, Query()] = None,
    cursor: Annotated[str | None, cursor_query(ONBOARDING_CURSOR)] = None,
) -> OnboardingListResponse:
    """The platform's onboardings, oldest first; `status=rejected` is the KYC review queue, `processing` the ones
    still running or waiting (a held check, a service down)."""
    rows = await flow.list_page(platform, status=status, after=cursor, limit=limit + 1)
    return OnboardingListResponse.of(
        rows, limit, item=OnboardingResponse.model_validate, cursor_of=lambda o: o.onboarding_id
    )


@router.get("/merchant-onboardings/{onboarding_id}")
async def read_onboarding(onboarding_id: str, platform: Reader, flow: OnboardingDep) -> OnboardingResponse:
    return OnboardingResponse.model_validate(await flow.read(platform, onboarding_id))


@router.post("/merchant-onboardings/{onboarding_id}/retry")
async def retry_onboarding(onboarding_id: str, platform: Reviewer, flow: OnboardingDep) -> OnboardingResponse:
    """Rejected steps run again (after the finding was cleared at the provider or the service)."""
    return OnboardingResponse.model_validate(await flow.retry(platform, onboarding_id))


@router.post("/merchants/{merchant_id}/suspension")
async def suspend_merchant(
    merchant_id: str, body: SuspensionRequest, platform: Manager, identities: IdentitiesDep
) -> MerchantStatusResponse:
    """From the next request on, on every replica: the merchant's writes other than refunds and closing are
    403 `merchant_suspended`; reads keep working. Audited with the reason."""
    changed = await merchant_status.change(identities, platform, merchant_id, suspend=True, reason=body.reason)
    return MerchantStatusResponse.model_validate(changed)


@router.post("/merchants/{merchant_id}/resumption")
async def resume_merchant(
    merchant_id: str, body: SuspensionRequest, platform: Manager, identities: IdentitiesDep
) -> MerchantStatusResponse:
    changed = await merchant_status.change(identities, platform, merchant_id, suspend=False, reason=body.reason)
    return MerchantStatusResponse.model_validate(changed)


@router.get("/merchants/{merchant_id}/suspension")
async def read_suspension(merchant_id: str, platform: Reader, identities: IdentitiesDep) -> MerchantStatusWithChanges:
    """Whether the merchant is suspended, and its suspensions and resumptions (newest first, at most 50)."""
    return MerchantStatusWithChanges.model_validate(await merchant_status.read(identities, platform, merchant_id))


@router.put("/partner-templates/{channel}/{mode}")
async def put_partner_template(
    channel: PartnerChannel, mode: Mode, body: PartnerTemplateRequest, platform: PlatformDep, flow: OnboardingDep
) -> PartnerTemplateResponse:
    """The platform's service-provider configuration of `channel` for `mode`, stored once (sealed): partner-mode
    onboardings then give only each merchant's part. Safe to repeat (the same configuration keeps its version); the
    answer never holds a secret. Admin key only: it carries the provider's private keys."""
    return PartnerTemplateResponse.model_validate(await flow.templates.put(platform, channel, mode, body.config))


@router.get("/partner-templates", dependencies=[KnownQueryOnly])
async def list_partner_templates(platform: Reader, flow: OnboardingDep) -> PartnerTemplateListResponse:
    """Every template of the platform (at most one per channel and mode: one page), public parts only."""
    rows = await flow.templates.list(platform)
    return PartnerTemplateListResponse.of(
        rows, len(rows) + 1, item=PartnerTemplateResponse.model_validate, cursor_of=lambda t: f"{t.channel}/{t.mode}"
    )


@router.get("/partner-templates/{channel}/{mode}")
async def read_partner_template(
    channel: PartnerChannel, mode: Mode, platform: Reader, flow: OnboardingDep
) -> PartnerTemplateResponse:
    return PartnerTemplateResponse.model_validate(await flow.templates.read(platform, channel, mode))
