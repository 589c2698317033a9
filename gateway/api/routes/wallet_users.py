"""My Wallet at the gateway: sign-in links (platform), web sessions (the web process), payment PINs (users).

`POST /v1/platform/users/{id}/wallet-sign-in-links` lives in platform.py's router prefix family but here for
cohesion; it is a platform-operator call like the user token it stands for. None of these POSTs is
idempotency-recorded: their requests or responses carry secrets.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from gateway.api.deps import ContextDep, GatekeeperDep, PlatformDep
from gateway.api.gatekeeper import Gatekeeper
from gateway.api.schemas import (
    PaymentPinSetRequest,
    PaymentPinStatusResponse,
    PaymentPinVerifiedResponse,
    PaymentPinVerifyRequest,
    UserTokenResponse,
    WalletSessionCreateRequest,
    WalletSignInLinkResponse,
)
from gateway.clients.marketing import applicable_coupons
from gateway.domain.access import Principal, RouteClass
from gateway.domain.errors import ROUTE_FORBIDDEN
from gateway.flows.wallet_users import WalletUsers
from libs.common.errors import Problem
from libs.common.money import MAX_AMOUNT_MINOR

router = APIRouter(tags=["my wallet"])


async def get_wallet_users(context: ContextDep) -> WalletUsers:
    return context.wallet_users


WalletUsersDep = Annotated[WalletUsers, Depends(get_wallet_users)]


async def _user(request: Request, gatekeeper: Gatekeeper, route_class: RouteClass) -> Principal:
    body = await gatekeeper.read_body(request)
    principal = await gatekeeper.admit(request, body, route_class)
    if principal.kind != "user":
        raise Problem(ROUTE_FORBIDDEN, "only a signed-in user (Bearer utk_…) may call this endpoint")
    return principal


async def reading_user(request: Request, gatekeeper: GatekeeperDep) -> Principal:
    return await _user(request, gatekeeper, "read")


async def pin_user(request: Request, gatekeeper: GatekeeperDep) -> Principal:
    """A user, counted in its own payment-PIN window too (the lockout caps wrong tries; this caps load)."""
    user = await _user(request, gatekeeper, "write")
    await gatekeeper.count(f"pin:{user.user_id}", gatekeeper.settings.payment_pin_rate_max)
    return user


ReadingUserDep = Annotated[Principal, Depends(reading_user)]
PinUserDep = Annotated[Principal, Depends(pin_user)]


@router.post("/v1/platform/users/{user_id}/wallet-sign-in-links", status_code=status.HTTP_201_CREATED)
async def create_sign_in_link(
    user_id: str, platform: PlatformDep, wallet_users: WalletUsersDep
) -> WalletSignInLinkResponse:
    """A one-time link (256-bit secret, `wallet_sign_in_link_seconds`, 5 min) that signs the user into My Wallet."""
    return WalletSignInLinkResponse.model_validate(await wallet_users.mint_sign_in_link(platform, user_id))


@router.post("/v1/web/wallet-sessions", status_code=status.HTTP_201_CREATED)
async def redeem_sign_in_link(
    body: WalletSessionCreateRequest, request: Request, gatekeeper: GatekeeperDep, wallet_users: WalletUsersDep
) -> UserTokenResponse:
    """The web process (its own token) redeems a link once for a user token (`wallet_session_seconds`),
    rate-limited per browser address (`X-Forwarded-For` as the authenticated web process reports it)."""
    wallet_users.check_web_client(request.headers.get("authorization"))
    browser = request.headers.get("x-forwarded-for", "").split(",")[0].strip() or "unknown"
    await gatekeeper.count(f"wallet-sign-in:{browser}", gatekeeper.settings.wallet_sign_in_rate_max)
    return UserTokenResponse.model_validate(await wallet_users.redeem_sign_in_link(body.token))


@router.post("/v1/me/sign-out", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out(user: ReadingUserDep, wallet_users: WalletUsersDep) -> Response:
    """Revokes the calling user token at once (every replica checks user tokens in the database)."""
    await wallet_users.sign_out(user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/me/payment-pin")
async def read_pin(user: ReadingUserDep, wallet_users: WalletUsersDep) -> PaymentPinStatusResponse:
    return PaymentPinStatusResponse.model_validate(await wallet_users.pin_status(user))


@router.put("/v1/me/payment-pin", responses={423: {"description": "payment_pin_locked (5 wrong tries in a row)"}})
async def set_pin(
    body: PaymentPinSetRequest, user: PinUserDep, wallet_users: WalletUsersDep
) -> PaymentPinStatusResponse:
    """Set the first PIN, or change it with the current one (a wrong current PIN counts as a wrong try)."""
    status_now = await wallet_users.set_pin(user, pin=body.pin, current_pin=body.current_pin)
    return PaymentPinStatusResponse.model_validate(status_now)


@router.post(
    "/v1/me/payment-pin/verifications", responses={423: {"description": "payment_pin_locked (5 wrong tries in a row)"}}
)
async def verify_pin(
    body: PaymentPinVerifyRequest, user: PinUserDep, wallet_users: WalletUsersDep
) -> PaymentPinVerifiedResponse:
    """200 when right; 403 `payment_pin_incorrect` (`tries_left`), 423 `payment_pin_locked` after 5 in a row."""
    return PaymentPinVerifiedResponse.model_validate(await wallet_users.verify_pin(user, body.pin))


@router.get("/v1/me/applicable-coupons")
async def my_applicable_coupons(
    user: ReadingUserDep,
    gatekeeper: GatekeeperDep,
    merchant_id: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    order_amount_minor: Annotated[int, Query(ge=1, le=MAX_AMOUNT_MINOR)],
    currency: Annotated[str, Query(pattern=r"^[A-Z]{3}$")] = "CNY",
    payment_method: Annotated[str | None, Query(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=20)] = 10,
) -> dict[str, Any]:
    """The signed-in user's coupons a payment to `merchant_id` of `order_amount_minor` could use, best discount
    first: `{data: [{coupon_id, stock_id, discount_minor, payable_minor, valid_until}], has_more}` (marketing's
    ranking; the hosted checkout offers them). The user is the token's; the cashier prices the chosen coupon again
    against the real payment when it locks it."""
    query: dict[str, str | int] = {
        "merchant_id": merchant_id,
        "order_amount_minor": order_amount_minor,
        "currency": currency,
        "limit": limit,
    }
    if payment_method is not None:
        query["payment_method"] = payment_method
    return await applicable_coupons(
        gatekeeper.upstreams.clients["marketing"],
        internal_token_secret=gatekeeper.settings.internal_token_secret.get_secret_value(),
        user=user,
        query=query,
    )
