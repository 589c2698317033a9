"""Marketing's coupon lock for a payment (`POST {marketing_url}/v1/internal/marketing/locks`).

Marketing owns coupons and computes the discount (docs/architecture.md §2), so the cashier asks it before
creating anything. Its answer decides: 201/200 → the lock (the discount, the payable amount and who funds the
discount); a 4xx problem about the coupon → the same status and `code` for the merchant (`coupon_expired`,
`coupon_not_applicable`, `threshold_not_met`, `coupon_locked`, `coupon_used`, `coupon_not_found`, …); anything
else (no URL configured, unreachable, timeout, 5xx, an answer about our call) → 503 `marketing_unavailable`.
A coupon is never applied unchecked.

Confirm, release and refund are not called from here: marketing consumes the cashier's own `payment.*` and
`refund.succeeded` events (outbox, at least once) and applies them to the redemption the event names, so no
outcome path (notification, poll, expiry, re-drive, late success) can forget to tell it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from libs.common.errors import Problem
from libs.common.http import json_object
from libs.common.logging import get_logger
from services.cashier.clients import InternalClient, relayed_refusal
from services.cashier.domain.errors import MARKETING_UNAVAILABLE

log = get_logger("juhe.cashier.marketing")

LOCKS_PATH = "/v1/internal/marketing/locks"
RELEASE_PATH = "/v1/internal/marketing/redemptions/{redemption_id}/release"
CHANNEL_EVENTS_PATH = "/v1/internal/marketing/channel-coupon-events"


class CouponHeld(Problem):
    """Marketing's `coupon_locked`, with who holds the lock (never shown to the merchant: `held_by`)."""

    def __init__(self, refusal: Problem, *, redemption_id: str, payment_id: str, locked_at: datetime) -> None:
        super().__init__(refusal.spec, refusal.detail, **refusal.extensions)
        self.held_by = (redemption_id, payment_id, locked_at)


@dataclass(frozen=True, slots=True)
class CouponLock:
    """Marketing's lock of one coupon for one payment: what the payer pays and who funds the discount."""

    redemption_id: str
    coupon_id: str
    stock_id: str
    campaign_id: str
    order_amount_minor: int
    discount_minor: int
    payable_minor: int
    party: str
    platform_share_bps: int
    platform_minor: int
    merchant_minor: int

    def record(self) -> dict[str, Any]:
        """What the payment stores (`payments.coupon`) and its events carry as `discount`."""
        return {
            "coupon_id": self.coupon_id,
            "redemption_id": self.redemption_id,
            "stock_id": self.stock_id,
            "campaign_id": self.campaign_id,
            "party": self.party,
            "platform_share_bps": self.platform_share_bps,
            "platform_minor": self.platform_minor,
            "merchant_minor": self.merchant_minor,
            "channel_minor": 0,
        }


def _lock_of(body: dict[str, Any]) -> CouponLock:
    funding = body["funding"]
    return CouponLock(
        redemption_id=str(body["redemption_id"]),
        coupon_id=str(body["coupon_id"]),
        stock_id=str(body["stock_id"]),
        campaign_id=str(body["campaign_id"]),
        order_amount_minor=int(body["order_amount_minor"]),
        discount_minor=int(body["discount_minor"]),
        payable_minor=int(body["payable_minor"]),
        party=str(funding["party"]),
        platform_share_bps=int(funding["platform_share_bps"]),
        platform_minor=int(funding["platform_minor"]),
        merchant_minor=int(funding["merchant_minor"]),
    )


class MarketingClient(InternalClient):
    async def lock(
        self,
        *,
        payment_id: str,
        coupon_id: str | None,
        coupon_code: str | None,
        user_id: str,
        merchant_id: str,
        scene: str,
        payment_method: str | None,
        order_amount_minor: int,
        currency: str,
        lock_seconds: int,
    ) -> CouponLock:
        """Lock the coupon for this payment (idempotent by payment_id at marketing); raise the merchant-facing
        Problem when marketing refuses the coupon, 503 `marketing_unavailable` when it cannot say."""
        if self._http is None:
            raise Problem(MARKETING_UNAVAILABLE, "no marketing service is configured to check the coupon")
        body = {
            "payment_id": payment_id,
            "coupon_id": coupon_id,
            "coupon_code": coupon_code,
            "user_id": user_id,
            "merchant_id": merchant_id,
            "scene": scene,
            "payment_method": payment_method,
            "order_amount_minor": order_amount_minor,
            "currency": currency,
            "lock_seconds": lock_seconds,
        }
        try:
            response = await self._http.post(LOCKS_PATH, json=body, headers=self.identity_headers())
        except httpx.HTTPError as exc:
            log.warning("marketing unreachable for a coupon lock", error=repr(exc))
            raise Problem(MARKETING_UNAVAILABLE, "marketing could not be reached to check the coupon") from exc
        answer = json_object(response)
        if response.status_code in (200, 201):
            try:
                return _lock_of(answer)
            except (KeyError, TypeError, ValueError) as exc:
                raise Problem(MARKETING_UNAVAILABLE, "marketing answered the coupon lock unreadably") from exc
        extra = {k: answer[k] for k in ("field",) if k in answer}  # which rule refused (coupon_not_applicable)
        if coupon_id is not None:  # a code is the user's secret: it is not echoed back
            extra["coupon_id"] = coupon_id
        refusal = relayed_refusal(response, "The coupon was refused by marketing", **extra)
        if refusal is not None and refusal.spec.code == "coupon_locked" and answer.get("lock_redemption_id"):
            try:
                raise CouponHeld(
                    refusal,
                    redemption_id=str(answer["lock_redemption_id"]),
                    payment_id=str(answer.get("lock_payment_id") or ""),
                    locked_at=datetime.fromisoformat(str(answer["locked_at"])),
                )
            except (KeyError, ValueError):
                raise refusal from None
        if refusal is not None:
            raise refusal
        log.warning(
            "marketing answered a coupon lock with an error", status=response.status_code, code=answer.get("code")
        )
        raise Problem(MARKETING_UNAVAILABLE, f"marketing answered the coupon lock with HTTP {response.status_code}")

    async def release(self, redemption_id: str, reason: str = "cancelled") -> bool:
        """Give back a lock whose payment was never created (refused after the lock). Best effort: a lock
        that is not released here runs out at marketing (`lock_seconds`) and its worker releases it."""
        if self._http is None:
            return False
        try:
            response = await self._http.post(
                RELEASE_PATH.format(redemption_id=redemption_id),
                json={"reason": reason},
                headers=self.identity_headers(),
            )
        except httpx.HTTPError as exc:
            log.warning(
                "marketing unreachable for a lock release; the lock will run out",
                error=repr(exc),
                redemption_id=redemption_id,
            )
            return False
        if response.status_code != 200:
            log.warning("marketing refused a lock release", status=response.status_code, redemption_id=redemption_id)
        return response.status_code == 200

    async def channel_coupon_event(self, event: dict[str, Any]) -> bool:
        """Hand a verified channel coupon callback to marketing (`flows/channel_coupons.py`); True once marketing
        has stored it (200), so the channel's callback is acknowledged only then and otherwise sent again."""
        if self._http is None:
            return False
        try:
            response = await self._http.post(CHANNEL_EVENTS_PATH, json=event, headers=self.identity_headers())
        except httpx.HTTPError as exc:
            log.warning("marketing unreachable for a channel coupon event", error=repr(exc))
            return False
        if response.status_code != 200:
            log.warning("marketing refused a channel coupon event", status=response.status_code)
        return response.status_code == 200
