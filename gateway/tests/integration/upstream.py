"""A small real upstream for the gateway's tests: a payments API scoped by the internal identity.

It stands for the cashier (whose payments API lands separately) and behaves as every service must:
it trusts only `X-Juhe-Identity` (verified with `libs.common.internal_auth`) and filters every read and
write by the merchant in it. It records every request it receives, so tests can prove that a refused
request never reached it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response, status
from pydantic import BaseModel, Field

from libs.common.errors import DATABASE_UNAVAILABLE, NOT_FOUND, Problem
from libs.common.ids import new_id
from libs.common.internal_auth import InternalIdentity, MerchantScope
from libs.common.settings import ServiceSettings
from libs.common.web import create_service_app


class PaymentCreateRequest(BaseModel):
    amount_minor: int = Field(ge=1, le=2**63 - 1)
    currency: str = Field(min_length=3, max_length=3)
    delay_seconds: float = Field(default=0, ge=0, le=15)
    # Answer 503 database_unavailable after the delay, as a service whose database went down meanwhile.
    fail_after_delay: bool = False


class PaymentResponse(BaseModel):
    id: str
    merchant_id: str
    amount_minor: int
    currency: str
    status: str


class PaymentListResponse(BaseModel):
    data: list[PaymentResponse]
    next_cursor: str | None


class Ledger:
    """The upstream's state, visible to the test."""

    def __init__(self) -> None:
        self.payments: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []


def create_upstream(settings: ServiceSettings, state: Ledger) -> FastAPI:
    router = APIRouter(prefix="/v1/payments", tags=["payments"])

    def own(payment_id: str, merchant_id: str) -> dict[str, Any]:
        payment = state.payments.get(payment_id)
        if payment is None or payment["merchant_id"] != merchant_id:
            raise Problem(NOT_FOUND, f"payment {payment_id} does not exist")
        return payment

    @router.post("", status_code=status.HTTP_201_CREATED)
    async def create_payment(body: PaymentCreateRequest, merchant_id: MerchantScope) -> PaymentResponse:
        await asyncio.sleep(body.delay_seconds)
        if body.fail_after_delay:
            raise Problem(DATABASE_UNAVAILABLE, retry_after_seconds=1)
        payment: dict[str, Any] = {
            "id": new_id("pay"),
            "merchant_id": merchant_id,
            "amount_minor": body.amount_minor,
            "currency": body.currency,
            "status": "created",
        }
        state.payments[payment["id"]] = payment
        return PaymentResponse.model_validate(payment)

    @router.get("")
    async def list_payments(
        merchant_id: MerchantScope, limit: int = 10, cursor: str | None = None
    ) -> PaymentListResponse:
        mine = sorted(p["id"] for p in state.payments.values() if p["merchant_id"] == merchant_id)
        after = [i for i in mine if cursor is None or i > cursor][:limit]
        more = len(after) == limit and after[-1] != mine[-1]
        return PaymentListResponse(
            data=[PaymentResponse.model_validate(state.payments[i]) for i in after],
            next_cursor=after[-1] if more else None,
        )

    @router.get("/{payment_id}")
    async def read_payment(payment_id: str, merchant_id: MerchantScope) -> PaymentResponse:
        return PaymentResponse.model_validate(own(payment_id, merchant_id))

    @router.post("/{payment_id}/close")
    async def close_payment(payment_id: str, merchant_id: MerchantScope) -> PaymentResponse:
        payment = own(payment_id, merchant_id)
        payment["status"] = "closed"
        return PaymentResponse.model_validate(payment)

    @router.get("/-/moved", include_in_schema=False)
    async def moved(request: Request) -> Response:
        """Answers with this server's own absolute URLs, as a framework's redirect would."""
        base = str(request.base_url).rstrip("/")
        return Response(
            status_code=status.HTTP_303_SEE_OTHER,
            headers={
                "Location": f"{base}/v1/payments?from=moved",
                "Content-Location": f"{base}/v1/payments/-/moved",
                "Link": f'<{base}/v1/payments?cursor=x>; rel="next", <https://docs.juhe.dev/payments>; rel="help"',
            },
        )

    @router.get("/-/whoami", include_in_schema=False)
    async def whoami(identity: InternalIdentity, request: Request) -> dict[str, Any]:
        return {"identity": identity.payload(), "headers": dict(request.headers)}

    app = create_service_app(settings, title="Test payments upstream", routers=[router])

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        if request.url.path.startswith("/v1/"):
            state.calls.append({"method": request.method, "path": request.url.path, "headers": dict(request.headers)})
        return await call_next(request)

    return app
