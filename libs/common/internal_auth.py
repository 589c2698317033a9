"""The signed internal identity token: how a service knows who is calling it through the gateway.

The gateway authenticates merchants, platform operators and end users, then forwards each request with
a short-lived token in `X-Juhe-Identity` that it signs with `ServiceSettings.internal_token_secret`
(HMAC-SHA256). Services trust *only* this header, never a bare merchant id a caller could type, so
"merchant A never sees merchant B's data" holds even if something reaches a service without going
through the gateway. The secret is shared by the gateway and the services only.

Token: `v1.<base64url(payload)>.<base64url(HMAC-SHA256(secret, "v1." + base64url(payload)))>` where the
payload is compact JSON (sorted keys, no spaces) of
`{"merchant_id" | "platform" | "user" | "service": ..., "key_id": ..., "exp": <unix seconds>}`, plus
`"mode": "test" | "live"` when the gateway authenticated an API key (its mode, docs/test-mode.md).
A platform operator acting for one merchant carries both `platform` and `merchant_id`; a user token
may carry the user's `platform` and `merchant_id` (checkout). `service` is for service-to-service calls.
The mode is inside the signed token, never a header of its own: a client cannot set it (the gateway
forwards no client `X-Juhe-*` header) and a service believes it only with a valid signature.

Not a JWT on purpose: one algorithm, one key, no header to negotiate, so no `alg` confusion.

In dev/test only, when no token header is present, `internal_identity` accepts the plain
`X-Juhe-Merchant-Id` header so service tests written before the gateway existed keep working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request

from libs.common.errors import IDENTITY_INVALID, IDENTITY_MISSING, MERCHANT_SCOPE_REQUIRED, VALIDATION_FAILED, Problem
from libs.common.modes import MODES, Mode, livemode_of

IDENTITY_HEADER = "X-Juhe-Identity"
DEV_MERCHANT_HEADER = "X-Juhe-Merchant-Id"
TOKEN_VERSION = "v1"
DEFAULT_TOKEN_TTL_SECONDS = 60
CLOCK_LEEWAY_SECONDS = 5
TOKEN_LENGTH_MAX = 4096
DEV_KEY_ID = "dev-header"

IdentityKind = Literal["user", "platform", "merchant", "service"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the gateway authenticated. Services scope every query by `merchant_id` when it is set."""

    key_id: str
    expires_at: int
    merchant_id: str | None = None
    platform: str | None = None
    user: str | None = None
    service: str | None = None
    # The mode of the API key the gateway authenticated (libs/common/modes.py); None for callers without one
    # (end users, services, the dev header).
    mode: Mode | None = None

    @property
    def kind(self) -> IdentityKind:
        if self.user:
            return "user"
        if self.platform:
            return "platform"
        if self.merchant_id:
            return "merchant"
        return "service"

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key_id": self.key_id, "exp": self.expires_at}
        for name in ("merchant_id", "platform", "user", "service", "mode"):
            value = getattr(self, name)
            if value:
                body[name] = value
        return body


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, signed: str) -> bytes:
    return hmac.new(secret.encode(), signed.encode("ascii"), hashlib.sha256).digest()


def mint_identity_token(
    secret: str,
    *,
    key_id: str,
    merchant_id: str | None = None,
    platform: str | None = None,
    user: str | None = None,
    service: str | None = None,
    mode: Mode | None = None,
    ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS,
    now: float | None = None,
) -> str:
    if not (merchant_id or platform or user or service):
        raise ValueError("an identity needs merchant_id, platform, user or service")
    identity = Identity(
        key_id=key_id,
        expires_at=int(now if now is not None else time.time()) + ttl_seconds,
        merchant_id=merchant_id,
        platform=platform,
        user=user,
        service=service,
        mode=mode,
    )
    return encode_identity(identity, secret)


def encode_identity(identity: Identity, secret: str) -> str:
    payload = json.dumps(identity.payload(), separators=(",", ":"), sort_keys=True).encode()
    signed = f"{TOKEN_VERSION}.{_b64(payload)}"
    return f"{signed}.{_b64(_mac(secret, signed))}"


def verify_identity_token(token: str, secret: str, *, now: float | None = None) -> Identity:
    """The identity inside `token`, or `Problem(IDENTITY_INVALID)` if forged, malformed or expired."""
    if len(token) > TOKEN_LENGTH_MAX or token.count(".") != 2:
        raise Problem(IDENTITY_INVALID, "malformed identity token")
    version, payload_b64, mac_b64 = token.split(".")
    if version != TOKEN_VERSION:
        raise Problem(IDENTITY_INVALID, "unknown identity token version")
    try:
        mac = _unb64(mac_b64)
        payload = json.loads(_unb64(payload_b64))
    except (binascii.Error, ValueError) as exc:
        raise Problem(IDENTITY_INVALID, "malformed identity token") from exc
    if not hmac.compare_digest(mac, _mac(secret, f"{version}.{payload_b64}")):
        raise Problem(IDENTITY_INVALID, "identity token signature does not match")
    if not isinstance(payload, dict):
        raise Problem(IDENTITY_INVALID, "malformed identity token")
    exp = payload.get("exp")
    key_id = payload.get("key_id")
    if not isinstance(exp, int) or not isinstance(key_id, str):
        raise Problem(IDENTITY_INVALID, "identity token lacks exp or key_id")
    if exp + CLOCK_LEEWAY_SECONDS < (now if now is not None else time.time()):
        raise Problem(IDENTITY_INVALID, "identity token expired")
    fields = {name: payload.get(name) for name in ("merchant_id", "platform", "user", "service")}
    if not any(fields.values()) or not all(v is None or isinstance(v, str) for v in fields.values()):
        raise Problem(IDENTITY_INVALID, "identity token names no principal")
    mode = payload.get("mode")
    if mode is not None and mode not in MODES:
        raise Problem(IDENTITY_INVALID, "identity token names an unknown mode")
    return Identity(key_id=key_id, expires_at=exp, mode=mode, **fields)


def internal_identity(request: Request) -> Identity:
    """FastAPI dependency: the verified identity of the caller (see the module docstring)."""
    settings = request.app.state.runtime.settings
    token = request.headers.get(IDENTITY_HEADER)
    if token:
        return verify_identity_token(token, settings.internal_token_secret.get_secret_value())
    merchant_id = request.headers.get(DEV_MERCHANT_HEADER)
    if merchant_id and settings.env in ("dev", "test"):
        return Identity(
            key_id=DEV_KEY_ID, expires_at=int(time.time()) + DEFAULT_TOKEN_TTL_SECONDS, merchant_id=merchant_id
        )
    raise Problem(IDENTITY_MISSING, f"send {IDENTITY_HEADER} (requests reach services through the gateway)")


async def _identity_dependency(request: Request) -> Identity:
    """`internal_identity` as a dependency. Async on purpose: FastAPI runs a plain `def` dependency in its
    thread pool, a thread hand-off on every request of every service (docs/performance.md)."""
    return internal_identity(request)


async def merchant_scope(identity: Annotated[Identity, Depends(_identity_dependency)]) -> str:
    """FastAPI dependency: the merchant every query must be filtered by; 403 when there is none."""
    if identity.merchant_id is None:
        raise Problem(MERCHANT_SCOPE_REQUIRED, f"a {identity.kind} identity has no merchant scope here")
    return identity.merchant_id


InternalIdentity = Annotated[Identity, Depends(_identity_dependency)]
MerchantScope = Annotated[str, Depends(merchant_scope)]


def optional_identity(request: Request) -> Identity | None:
    """`internal_identity`, or None for a request that carries none (a Juhe service calling another directly;
    the gateway never forwards a request without one)."""
    if IDENTITY_HEADER not in request.headers and DEV_MERCHANT_HEADER not in request.headers:
        return None
    return internal_identity(request)


async def caller_livemode(
    request: Request,
    livemode: Annotated[
        bool | None, Query(description="Only live (true) or test (false) money; a key always gets its own mode")
    ] = None,
) -> bool | None:
    """The mode (book) a request is in (docs/test-mode.md): for a caller acting for a merchant (a merchant key, or a
    platform key on a merchant's behalf) its key's mode, `?livemode=` naming the other being 422. Any other caller
    (a platform acting for itself, whose ledger holds both books and live-only wallets; a console session; a
    service) may pick one with `livemode`, else None: both, each object marked. Async: no thread hand-off."""
    identity = optional_identity(request)
    own = None
    if identity is not None and identity.merchant_id is not None and identity.mode is not None:
        own = livemode_of(identity.mode)
    return narrowed_livemode(own, livemode)


def narrowed_livemode(own: bool | None, requested: bool | None) -> bool | None:
    """The mode a read is narrowed to: the caller's key's own (`requested` naming the other is 422), else the one
    `requested`, else None (both, each object marked). Who has an own mode is the service's call (the ledger's
    `caller_livemode`, the cashier's `livemode_query`)."""
    if own is not None and requested is not None and requested is not own:
        raise Problem(VALIDATION_FAILED, "livemode must be the mode of the key making the request", field="livemode")
    return own if own is not None else requested


CallerLivemode = Annotated[bool | None, Depends(caller_livemode)]
