"""Console staff endpoints (gateway/flows/staff.py, docs/consoles.md). Not in the public OpenAPI document: they serve
Juhe's own web process (the consoles), not API clients.

Three callers: the web process with its first-party token (`/v1/web/console-…`: exchange a password for a session,
use an invitation or reset link), a signed-in member's console session (`/v1/console/…`, Bearer `cst_…`, their
role checked in every call), and the platform's admin key (`/v1/platform/staff…`: a merchant's first owner, the
first operators, reset links). None of these POSTs is idempotency-recorded: their answers carry secrets.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from pydantic import BaseModel, Field, model_validator

from gateway.api.deps import ContextDep, GatekeeperDep, PlatformDep
from gateway.api.gatekeeper import Gatekeeper
from gateway.api.onboarding_schemas import OnboardingCreateRequest, OnboardingResponse
from gateway.api.routes import onboarding as onboarding_routes
from gateway.clients.services import PlatformCalls
from gateway.domain import onboarding as onboarding_rules
from gateway.domain.access import Principal
from gateway.domain.errors import CONSOLE_PERMISSION_DENIED
from gateway.flows import kyc_review
from gateway.flows.console_postings import REFUNDS_MAX, merchant_postings
from gateway.flows.staff import Member, StaffConsole
from libs.common.errors import Problem

router = APIRouter(include_in_schema=False, tags=["console staff"])

Text200 = Annotated[str, Field(min_length=1, max_length=200)]
Secret = Annotated[str, Field(min_length=1, max_length=300)]
Role = Annotated[str, Field(pattern=r"^[a-z_]{2,32}$")]
Id = Annotated[str, Field(pattern=r"^[a-z]{2,4}_(?:(?:test|live)_)?[0-9a-f]{32}$")]  # API key ids name their mode


class ConsoleSignInRequest(BaseModel):
    email: Annotated[str, Field(min_length=3, max_length=254)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class ConsoleSecondFactorRequest(BaseModel):
    ticket: Secret
    code: Annotated[str, Field(min_length=6, max_length=20)]


class ConsoleLinkRequest(BaseModel):
    token: Secret
    purpose: Literal["invitation", "password_reset"]


class ConsoleLinkRedeemRequest(ConsoleLinkRequest):
    password: Annotated[str, Field(min_length=1, max_length=256)]
    name: Annotated[str | None, Field(max_length=200)] = None
    totp_code: Annotated[str | None, Field(max_length=20)] = None


class ConsoleSignOutRequest(BaseModel):
    everywhere: bool = False


class ConsoleCodeRequest(BaseModel):
    code: Annotated[str, Field(min_length=6, max_length=20)]


class StaffInviteRequest(BaseModel):
    email: Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
    role: Role
    name: Annotated[str, Field(max_length=200)] = ""


class PlatformStaffCreateRequest(StaffInviteRequest):
    kind: Literal["merchant", "operator"]
    merchant_id: Annotated[str | None, Field(max_length=64)] = None


class StaffRoleRequest(BaseModel):
    role: Role


class AuditRecordRequest(BaseModel):
    action: Annotated[str, Field(pattern=r"^[a-z_]{2,40}\.[a-z_]{2,40}$")]
    target: Annotated[str, Field(max_length=200)] = ""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


class ApiKeyRotateRequest(BaseModel):
    overlap_seconds: Annotated[int, Field(ge=0, le=7 * 86400)] = 86400


class ConsoleSettingsRequest(BaseModel):
    refund_approval_threshold_minor: Annotated[int, Field(ge=0, le=10**13)]


class RefundRequestCreateRequest(BaseModel):
    payment_id: Annotated[str, Field(min_length=1, max_length=64)]
    amount_minor: Annotated[int, Field(gt=0, le=10**13)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "CNY"
    reason: Annotated[str, Field(max_length=500)] = ""


class RefundExecutedRequest(BaseModel):
    refund_id: Annotated[str, Field(min_length=1, max_length=64)]


async def get_staff_console(context: ContextDep) -> StaffConsole:
    return context.staff


StaffDep = Annotated[StaffConsole, Depends(get_staff_console)]


def _browser(request: Request) -> str:
    """The browser's address as the web process reports it (the only caller holding console credentials)."""
    return request.headers.get("x-forwarded-for", "").split(",")[0].strip()[:64] or "unknown"


async def _web_client(request: Request, gatekeeper: GatekeeperDep, staff: StaffDep) -> str:
    """Only the web process (its first-party token); counted per browser address: sign-in rate limit."""
    staff.check_web_client(request.headers.get("authorization"))
    browser = _browser(request)
    await gatekeeper.count(f"console-sign-in:{browser}", gatekeeper.settings.staff_sign_in_rate_max)
    return browser


async def _member(request: Request, gatekeeper: Gatekeeper, staff: StaffConsole, route_class: Any) -> Member:
    body = await gatekeeper.read_body(request)
    principal = await gatekeeper.admit(request, body, route_class)
    return await staff.member(principal, _browser(request))


async def reading_member(request: Request, gatekeeper: GatekeeperDep, staff: StaffDep) -> Member:
    return await _member(request, gatekeeper, staff, "read")


async def writing_member(request: Request, gatekeeper: GatekeeperDep, staff: StaffDep) -> Member:
    return await _member(request, gatekeeper, staff, "write")


WebClient = Annotated[str, Depends(_web_client)]
Reader = Annotated[Member, Depends(reading_member)]
Writer = Annotated[Member, Depends(writing_member)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=64)]


# ---- the web process: sign-in and one-time links -----------------------------------------------------------
@router.post("/v1/web/console-sessions", status_code=status.HTTP_201_CREATED)
async def sign_in(body: ConsoleSignInRequest, browser: WebClient, staff: StaffDep) -> dict[str, Any]:
    """A session, or 401 `console_totp_required` with a one-time `ticket` for the second step."""
    return await staff.sign_in(email=body.email, password=body.password, ip=browser)


@router.post("/v1/web/console-sessions/second-factor", status_code=status.HTTP_201_CREATED)
async def second_factor(body: ConsoleSecondFactorRequest, browser: WebClient, staff: StaffDep) -> dict[str, Any]:
    return await staff.sign_in_second_factor(ticket=body.ticket, code=body.code, ip=browser)


@router.post("/v1/web/console-links/inspection")
async def inspect_link(body: ConsoleLinkRequest, browser: WebClient, staff: StaffDep) -> dict[str, Any]:
    return await staff.link_details(body.token, body.purpose)


@router.post("/v1/web/console-links/redemption")
async def redeem_link(body: ConsoleLinkRedeemRequest, browser: WebClient, staff: StaffDep) -> dict[str, Any]:
    return await staff.set_password_by_link(
        token=body.token,
        purpose=body.purpose,
        password=body.password,
        name=body.name,
        totp_code=body.totp_code,
        ip=browser,
    )


# ---- a signed-in member -------------------------------------------------------------------------------------
@router.get("/v1/console/me")
async def me(member: Reader) -> dict[str, Any]:
    return member.view()


@router.post("/v1/console/me/sign-out")
async def sign_out(body: ConsoleSignOutRequest, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return {"sessions_ended": await staff.sign_out(member, everywhere=body.everywhere)}


@router.post("/v1/console/me/totp")
async def begin_totp(member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.begin_totp(member)


@router.post("/v1/console/me/totp/confirmation")
async def confirm_totp(body: ConsoleCodeRequest, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.confirm_totp(member, body.code)


@router.get("/v1/console/staff")
async def list_staff(member: Reader, staff: StaffDep) -> dict[str, Any]:
    return {"data": await staff.list_staff(member)}


@router.post("/v1/console/staff/invitations", status_code=status.HTTP_201_CREATED)
async def invite(body: StaffInviteRequest, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.invite(member, email=body.email, role=body.role, name=body.name)


@router.post("/v1/console/staff/{staff_id}/role")
async def change_role(staff_id: Id, body: StaffRoleRequest, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.change_role(member, staff_id, body.role)


@router.post("/v1/console/staff/{staff_id}/removal")
async def remove(staff_id: Id, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.remove(member, staff_id)


@router.post("/v1/console/staff/{staff_id}/password-reset-links", status_code=status.HTTP_201_CREATED)
async def reset_link(staff_id: Id, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.password_reset_link(member.platform_id, staff_id, actor=member)


@router.get("/v1/console/audit")
async def audit(
    member: Reader,
    staff: StaffDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    merchant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    return await staff.audit_page(member, before_id=cursor, limit=limit, merchant_id=merchant_id)


@router.post("/v1/console/audit", status_code=status.HTTP_201_CREATED)
async def record(body: AuditRecordRequest, member: Writer, staff: StaffDep) -> dict[str, str]:
    """The web process records a write it made through the public API (actor, merchant, address: the session's)."""
    await staff.record(member, action=body.action, target=body.target, before=body.before, after=body.after)
    return {"status": "recorded"}


@router.get("/v1/console/api-keys")
async def api_keys(member: Reader, staff: StaffDep) -> dict[str, Any]:
    return {"data": await staff.api_keys(member)}


@router.post("/v1/console/api-keys", status_code=status.HTTP_201_CREATED)
async def create_api_key(member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.create_api_key(member)


@router.post("/v1/console/api-keys/{key_id}/rotate")
async def rotate_api_key(key_id: Id, body: ApiKeyRotateRequest, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.rotate_api_key(member, key_id, body.overlap_seconds)


@router.post("/v1/console/api-keys/{key_id}/revoke")
async def revoke_api_key(key_id: Id, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.revoke_api_key(member, key_id)


@router.get("/v1/console/settings")
async def read_settings(member: Reader, staff: StaffDep) -> dict[str, Any]:
    return await staff.settings_of(member)


@router.put("/v1/console/settings")
async def write_settings(body: ConsoleSettingsRequest, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.set_refund_threshold(member, body.refund_approval_threshold_minor)


@router.get("/v1/console/refund-requests")
async def refund_requests(
    member: Reader,
    staff: StaffDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status_: Annotated[Literal["pending", "approved", "rejected", "executed"] | None, Query(alias="status")] = None,
) -> dict[str, Any]:
    return await staff.refund_requests(member, status=status_, before_id=cursor, limit=limit)


@router.post("/v1/console/refund-requests", status_code=status.HTTP_201_CREATED)
async def request_refund(body: RefundRequestCreateRequest, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.request_refund(
        member, payment_id=body.payment_id, amount_minor=body.amount_minor, currency=body.currency, reason=body.reason
    )


@router.get("/v1/console/refund-requests/{request_id}")
async def refund_request(request_id: Id, member: Reader, staff: StaffDep) -> dict[str, Any]:
    return await staff.refund_request(member, request_id)


@router.post("/v1/console/refund-requests/{request_id}/approval")
async def approve_refund(request_id: Id, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.decide_refund(member, request_id, approve=True)


@router.post("/v1/console/refund-requests/{request_id}/rejection")
async def reject_refund(request_id: Id, member: Writer, staff: StaffDep) -> dict[str, Any]:
    return await staff.decide_refund(member, request_id, approve=False)


@router.post("/v1/console/refund-requests/{request_id}/execution")
async def refund_executed(
    request_id: Id, body: RefundExecutedRequest, member: Writer, staff: StaffDep
) -> dict[str, Any]:
    return await staff.refund_executed(member, request_id, body.refund_id)


PaymentRef = Annotated[str, Path(pattern=r"^[a-z]{2,4}_[A-Za-z0-9_]{8,60}$")]
RefundRefs = Annotated[
    list[Annotated[str, Field(pattern=r"^[a-z]{2,4}_[A-Za-z0-9_]{8,60}$")]], Query(max_length=REFUNDS_MAX)
]


@router.get("/v1/console/payments/{payment_id}/postings")
async def payment_postings(
    payment_id: PaymentRef,
    member: Reader,
    gatekeeper: GatekeeperDep,
    refund_id: RefundRefs = [],  # noqa: B006
) -> dict[str, Any]:
    """The ledger's lines for the payment's success and the given refunds, on the member's merchant's accounts only
    (gateway/flows/console_postings.py): the merchant console's payment page."""
    member.require("payments.read")
    if member.merchant_id is None:
        raise Problem(CONSOLE_PERMISSION_DENIED, "only a merchant's staff see a payment's postings")
    secret = gatekeeper.settings.internal_token_secret.get_secret_value()
    calls = PlatformCalls(gatekeeper.upstreams.clients, internal_token_secret=secret)
    lines = await merchant_postings(
        calls,
        platform_id=member.platform_id,
        merchant_id=member.merchant_id,
        payment_id=payment_id,
        refund_ids=list(refund_id),
    )
    return {"data": lines, "has_more": False, "next_cursor": None}


# ---- merchant onboarding from the operator console (docs/consoles.md, docs/onboarding.md) --------------------
Onboarder = Annotated[Principal, onboarding_routes.operator(onboarding_rules.SUSPEND_PERMISSION)]
KycReviewer = Annotated[Principal, onboarding_routes.operator(onboarding_rules.RETRY_PERMISSION)]
OnboardingRef = Annotated[str, Path(pattern=r"^onb_[0-9a-f]{32}$")]


class KycReviewRequest(BaseModel):
    decision: Literal["approve", "reject"]
    reason: Annotated[str | None, Field(min_length=1, max_length=500)] = None

    @model_validator(mode="after")
    def _reason_for_a_rejection(self) -> KycReviewRequest:
        if self.decision == "reject" and not self.reason:
            raise ValueError("a rejection needs its reason")
        return self


@router.post("/v1/console/merchant-onboardings", status_code=status.HTTP_201_CREATED)
async def console_onboarding(
    body: OnboardingCreateRequest,
    platform: Onboarder,
    flow: onboarding_routes.OnboardingDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> OnboardingResponse:
    """The one-call onboarding by an operator whose role has `platform.merchants.manage` (the admin key's is
    `POST /v1/platform/merchant-onboardings`): the same flow, idempotency and answer, the merchant's API key and
    webhook secret included (the console shows them once, to hand over)."""
    return await onboarding_routes.create_onboarding(body, platform, flow, response, idempotency_key)


@router.post("/v1/console/merchant-onboardings/{onboarding_id}/kyc-review")
async def review_held_kyc(
    onboarding_id: OnboardingRef, body: KycReviewRequest, platform: KycReviewer, flow: onboarding_routes.OnboardingDep
) -> OnboardingResponse:
    """Approve, or reject with a reason, the KYC check the identity provider holds for a manual review
    (`platform.kyc.review`); the onboarding then runs on at once (gateway/flows/kyc_review.py). 409
    `onboarding_kyc_not_held` when no check of it is held (decided meanwhile)."""
    view = await kyc_review.decide(
        flow, platform, onboarding_id, approve=body.decision == "approve", reason=body.reason
    )
    return OnboardingResponse.model_validate(view)


# ---- the platform's admin key -------------------------------------------------------------------------------
@router.post("/v1/platform/staff", status_code=status.HTTP_201_CREATED)
async def create_staff(body: PlatformStaffCreateRequest, platform: PlatformDep, staff: StaffDep) -> dict[str, Any]:
    return await staff.create_by_platform(
        platform, kind=body.kind, merchant_id=body.merchant_id, email=body.email, role=body.role, name=body.name
    )


@router.post("/v1/platform/staff/{staff_id}/password-reset-links", status_code=status.HTTP_201_CREATED)
async def platform_reset_link(staff_id: Id, platform: PlatformDep, staff: StaffDep) -> dict[str, Any]:
    return await staff.password_reset_link(platform.platform_id, staff_id, actor=None)
