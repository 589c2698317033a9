"""The platform identity admin API: merchants, their keys, end users and their tokens.

Platform operators only (`Authorization: Bearer <admin key>`). These POSTs are not idempotency-recorded
on purpose: their responses carry secrets, and a stored response would put a secret in the database.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status

from gateway.api.deps import GatekeeperDep, IdentitiesDep, PlatformDep
from gateway.api.schemas import (
    ApiKeyCreateRequest,
    ApiKeyResponse,
    ApiKeyRotatedResponse,
    ApiKeyRotateRequest,
    ApiKeySecretResponse,
    MerchantCreatedResponse,
    MerchantCreateRequest,
    MerchantResponse,
    UserCreateRequest,
    UserResponse,
    UserTokenCreateRequest,
    UserTokenResponse,
)
from gateway.clients.platform_health import platform_health
from gateway.domain.errors import ROUTE_FORBIDDEN
from libs.common.errors import Problem

router = APIRouter(prefix="/v1/platform", tags=["platform"])


@router.post("/merchants", status_code=status.HTTP_201_CREATED)
async def create_merchant(
    body: MerchantCreateRequest, platform: PlatformDep, identities: IdentitiesDep
) -> MerchantCreatedResponse:
    created = await identities.create_merchant(
        platform,
        name=body.name,
        merchant_id=body.merchant_id,
        rsa_public_key_pem=body.rsa_public_key_pem,
        key_mode=body.key_mode,
    )
    return MerchantCreatedResponse.model_validate(created)


@router.get("/merchants/{merchant_id}")
async def read_merchant(merchant_id: str, platform: PlatformDep, identities: IdentitiesDep) -> MerchantResponse:
    return MerchantResponse.model_validate(await identities.merchant(platform, merchant_id))


@router.post("/merchants/{merchant_id}/keys", status_code=status.HTTP_201_CREATED)
async def create_merchant_key(
    merchant_id: str, body: ApiKeyCreateRequest, platform: PlatformDep, identities: IdentitiesDep
) -> ApiKeySecretResponse:
    key = await identities.create_merchant_key(
        platform, merchant_id, rsa_public_key_pem=body.rsa_public_key_pem, mode=body.mode
    )
    return ApiKeySecretResponse.model_validate(key)


@router.post("/keys/{key_id}/rotate", status_code=status.HTTP_201_CREATED)
async def rotate_key(
    key_id: str, body: ApiKeyRotateRequest, platform: PlatformDep, identities: IdentitiesDep
) -> ApiKeyRotatedResponse:
    rotated = await identities.rotate_key(
        platform,
        key_id,
        overlap_seconds=body.overlap_seconds,
        rsa_public_key_pem=body.rsa_public_key_pem,
        mode=body.mode,
    )
    return ApiKeyRotatedResponse.model_validate(rotated)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, platform: PlatformDep, identities: IdentitiesDep) -> ApiKeyResponse:
    return ApiKeyResponse.model_validate(await identities.revoke_key(platform, key_id))


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreateRequest, platform: PlatformDep, identities: IdentitiesDep) -> UserResponse:
    return UserResponse.model_validate(await identities.create_user(platform, name=body.name, user_id=body.user_id))


@router.post("/users/{user_id}/tokens", status_code=status.HTTP_201_CREATED)
async def issue_user_token(
    user_id: str, body: UserTokenCreateRequest, platform: PlatformDep, identities: IdentitiesDep
) -> UserTokenResponse:
    token = await identities.issue_user_token(
        platform, user_id, ttl_seconds=body.ttl_seconds, merchant_id=body.merchant_id
    )
    return UserTokenResponse.model_validate(token)


# Readiness, outbox backlog, dead letters and consumer lag of the whole platform (gateway/clients/platform_health.py),
# for the operator console's health page: an operator's console session with `platform.health.read`, or the admin
# key. Out of the public API document: it serves Juhe's own console.
HEALTH_PERMISSION = "platform.health.read"


@router.get("/health", include_in_schema=False)
async def health(request: Request, gatekeeper: GatekeeperDep) -> dict[str, Any]:
    principal = await gatekeeper.admit(request, await gatekeeper.read_body(request), "read")
    permissions = principal.permissions  # a console session's role; None for the admin key
    if principal.kind != "platform" or (permissions is not None and HEALTH_PERMISSION not in permissions):
        raise Problem(ROUTE_FORBIDDEN, "platform health is for operators with the health permission")
    s = gatekeeper.settings
    return await platform_health(
        gatekeeper.upstreams.clients, bootstrap=s.kafka_bootstrap_servers, namespace=s.topic_namespace
    )
