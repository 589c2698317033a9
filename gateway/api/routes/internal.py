"""Endpoints for Juhe services only (internal identity token with a `service` claim); not public."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.api.deps import IdentitiesDep, InternalServiceDep
from gateway.api.schemas import WebhookSecretResponse

router = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)


@router.get("/merchants/{merchant_id}/webhook-secret")
async def read_webhook_secret(
    merchant_id: str, service: InternalServiceDep, identities: IdentitiesDep
) -> WebhookSecretResponse:
    """The cashier signs merchant notifications with it (`Juhe-Signature: t=…,v1=…`)."""
    return WebhookSecretResponse(merchant_id=merchant_id, webhook_secret=await identities.webhook_secret(merchant_id))
