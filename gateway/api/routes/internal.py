"""Endpoints for Juhe services only (internal identity token with a `service` claim); not public."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from gateway.api.deps import IdentitiesDep, InternalServiceDep
from gateway.api.schemas import WebhookSecretResponse
from gateway.domain.errors import MERCHANT_NOT_FOUND
from gateway.store.onboarding import merchant_state
from libs.common.errors import Problem

router = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)


class MerchantProfileResponse(BaseModel):
    merchant_id: str
    name: str
    status: str
    suspended: bool  # the cashier refuses checkout-page payments of a suspended merchant (docs/onboarding.md)


@router.get("/merchants/{merchant_id}")
async def read_merchant_profile(
    merchant_id: str, service: InternalServiceDep, identities: IdentitiesDep
) -> MerchantProfileResponse:
    """The registry's merchant name: the hosted checkout shows it (never a name the merchant's request gives);
    whether it is suspended: its checkout pages and payment links then take no payment."""
    async with identities.uow.read() as conn:
        row = await merchant_state(conn, merchant_id)
    if row is None:
        raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} does not exist")
    return MerchantProfileResponse(
        merchant_id=merchant_id, name=row["name"], status=row["status"], suspended=row["suspended_at"] is not None
    )


@router.get("/merchants/{merchant_id}/webhook-secret")
async def read_webhook_secret(
    merchant_id: str, service: InternalServiceDep, identities: IdentitiesDep
) -> WebhookSecretResponse:
    """The cashier signs merchant notifications with it (`Juhe-Signature: t=…,v1=…`)."""
    return WebhookSecretResponse(merchant_id=merchant_id, webhook_secret=await identities.webhook_secret(merchant_id))
