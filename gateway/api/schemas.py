"""Request and response schemas of the gateway's own API (pydantic): the platform identity admin API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.domain.pins import PIN_PATTERN
from libs.common.modes import Mode

KEY_MODE_DESCRIPTION = (
    "test: reaches only sandbox channel configurations and sees only test objects; live: real channels and live "
    "objects only (docs/test-mode.md)"
)

ID_PATTERN = r"^[a-z][a-z0-9]{0,7}_[A-Za-z0-9_\-]{1,64}$"


class MerchantCreateRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Demo coffee shop"])
    merchant_id: str | None = Field(default=None, pattern=ID_PATTERN, examples=["mch_demo"])
    rsa_public_key_pem: str | None = Field(default=None, max_length=8192, description="Enables JUHE-RSA-SHA256")
    key_mode: Mode = Field(default="test", description="The mode of the first API key. " + KEY_MODE_DESCRIPTION)


class ApiKeyCreateRequest(BaseModel):
    rsa_public_key_pem: str | None = Field(default=None, max_length=8192)
    mode: Mode = Field(default="test", description=KEY_MODE_DESCRIPTION)


class ApiKeyRotateRequest(BaseModel):
    overlap_seconds: int = Field(default=86400, ge=0, le=90 * 86400, description="How long the old key keeps working")
    rsa_public_key_pem: str | None = Field(default=None, max_length=8192)
    mode: Mode | None = Field(default=None, description="The new key's mode; default: the old key's")


class UserCreateRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    user_id: str | None = Field(default=None, pattern=ID_PATTERN, examples=["usr_demo"])


class UserTokenCreateRequest(BaseModel):
    ttl_seconds: int = Field(default=900, ge=60, le=7 * 86400)
    merchant_id: str | None = Field(default=None, pattern=ID_PATTERN, description="Scope the token to one merchant")


class ApiKeySecretResponse(BaseModel):
    """A new merchant key: the secret is shown once and never again."""

    key_id: str
    secret: str
    rsa: bool
    mode: Mode


class AdminKeyResponse(BaseModel):
    key_id: str
    token: str
    mode: Mode


class ApiKeyResponse(BaseModel):
    key_id: str
    owner_kind: str
    owner_id: str
    status: str
    mode: Mode
    rsa: bool
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None
    created_at: datetime


class MerchantCreatedResponse(BaseModel):
    merchant_id: str
    name: str
    api_key: ApiKeySecretResponse
    webhook_secret: str = Field(description="Verify Juhe-Signature on webhooks with it; shown once")


class MerchantResponse(BaseModel):
    merchant_id: str
    name: str
    status: str
    created_at: datetime
    keys: list[ApiKeyResponse]


class ApiKeyRotatedResponse(BaseModel):
    new_key: ApiKeySecretResponse | AdminKeyResponse
    old_key: ApiKeyResponse


class UserResponse(BaseModel):
    user_id: str
    name: str


class UserTokenResponse(BaseModel):
    token: str = Field(description="Authorization: Bearer <token>")
    token_id: str
    user_id: str
    expires_at: datetime


class WebhookSecretResponse(BaseModel):
    merchant_id: str
    webhook_secret: str


class WalletSignInLinkResponse(BaseModel):
    """A one-time link into My Wallet: give it to the user at once (it lives minutes and works once)."""

    url: str
    user_id: str
    expires_at: datetime


class WalletSessionCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")


class PaymentPinSetRequest(BaseModel):
    """First set: `pin` only. Change: `pin` (the new one) and `current_pin`."""

    model_config = ConfigDict(extra="forbid")
    pin: str = Field(pattern=PIN_PATTERN, description="Six digits")
    current_pin: str | None = Field(default=None, pattern=PIN_PATTERN)


class PaymentPinVerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pin: str = Field(pattern=PIN_PATTERN)


class PaymentPinStatusResponse(BaseModel):
    set: bool
    locked: bool
    tries_left: int
    locked_until: datetime | None


class PaymentPinVerifiedResponse(BaseModel):
    verified: bool
