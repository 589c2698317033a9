"""API versions: the dated versions and their changes, and a merchant's pinned default (platform operators).

The pinned version is what the merchant's requests use without a `Juhe-Version` header; moving a merchant
to a newer version is the platform's decision (usually after the merchant tested it with the header).
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gateway.api.deps import IdentitiesDep, PlatformDep
from gateway.domain import versions

router = APIRouter(prefix="/v1/platform", tags=["platform"])


class ApiVersionResponse(BaseModel):
    name: str = Field(description="The version's name: its release date (YYYY-MM-DD)")
    changes: list[str]


class ApiVersionList(BaseModel):
    data: list[ApiVersionResponse] = Field(description="Oldest first; the last is the latest")
    has_more: bool = False  # a handful of versions: always one page
    next_cursor: str | None = None
    latest: str


class MerchantApiVersionRequest(BaseModel):
    api_version: str = Field(min_length=10, max_length=10, examples=[versions.LATEST_VERSION])


class MerchantApiVersionResponse(BaseModel):
    merchant_id: str
    api_version: str = Field(description="What the merchant's requests use without a Juhe-Version header")
    pinned: bool = Field(description="False: nothing pinned, the merchant follows the latest version")


@router.get("/api-versions")
async def list_api_versions(platform: PlatformDep) -> ApiVersionList:
    return ApiVersionList(
        data=[ApiVersionResponse(name=v.name, changes=list(v.changes)) for v in versions.API_VERSIONS],
        latest=versions.LATEST_VERSION,
    )


@router.get("/merchants/{merchant_id}/api-version")
async def read_merchant_api_version(
    merchant_id: str, platform: PlatformDep, identities: IdentitiesDep
) -> MerchantApiVersionResponse:
    await identities.merchant(platform, merchant_id)  # 404 merchant_not_found for another platform's merchant
    pinned = await identities.pinned_version(merchant_id)
    return MerchantApiVersionResponse(
        merchant_id=merchant_id, api_version=versions.resolve(None, pinned), pinned=pinned is not None
    )


@router.put("/merchants/{merchant_id}/api-version")
async def pin_merchant_api_version(
    merchant_id: str, body: MerchantApiVersionRequest, platform: PlatformDep, identities: IdentitiesDep
) -> MerchantApiVersionResponse:
    """Pin the merchant's default version (400 api_version_unknown for a version that does not exist)."""
    await identities.pin_version(platform, merchant_id, versions.known(body.api_version))
    return MerchantApiVersionResponse(merchant_id=merchant_id, api_version=body.api_version, pinned=True)
