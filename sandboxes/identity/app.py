"""create_app(settings) → the identity provider sandbox (KYC): verifications answered 202 and called back, merchant
checks answered at once, the control API (rules, held requests).

Protocol (Juhe's own, labelled as such; real providers — e.g. the public-security ID check or bank-card
4-factor services — each have their own): docs/protocols/identity.md. Requests are JSON signed as `crypto.py`
says; the sandbox is strict: a body over 8 KiB is 413, a bad or stale signature 401, bad fields 422 (in that
order). The rules and records are in `sandbox.py`. Must not import anything from libs/ or services/.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandboxes.common.control import build_common_router
from sandboxes.common.faults import FaultMiddleware, FaultSettings
from sandboxes.common.notify import NotificationDispatcher
from sandboxes.common.paths import sandbox_data_dir
from sandboxes.common.runner import NATIVE_TELEMETRY_OFF, dispatching_lifespan
from sandboxes.common.store import DocumentStore
from sandboxes.identity.crypto import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from sandboxes.identity.sandbox import (
    IdentityError,
    IdentityProvider,
    MerchantCheckRequest,
    Rules,
    VerificationRequest,
)
from sandboxes.identity.settings import CALLBACK_SCHEDULE_SECONDS, IdentitySettings

REQUEST_BODY_MAX_BYTES = 8192

_Model = TypeVar("_Model", bound=BaseModel)


class ManualDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=200)


def create_app(settings: IdentitySettings) -> FastAPI:
    faults = FaultSettings()
    dispatcher = NotificationDispatcher(
        schedule_seconds=CALLBACK_SCHEDULE_SECONDS,
        is_acknowledged=lambda r: 200 <= r.status_code < 300,
        faults=faults,
        scale=settings.notify_scale,
    )
    store = DocumentStore(sandbox_data_dir("identity", settings.data_dir) / "store.sqlite3")
    provider = IdentityProvider(settings, store, dispatcher)

    app = FastAPI(
        title="Juhe identity sandbox", lifespan=dispatching_lifespan(dispatcher, store), telemetry=NATIVE_TELEMETRY_OFF
    )
    app.include_router(build_common_router(channel="identity", faults=faults, dispatcher=dispatcher))
    app.add_middleware(
        FaultMiddleware,
        faults=faults,
        error_response=lambda: JSONResponse({"code": "SYSTEM_ERROR", "message": "try later"}, status_code=500),
    )

    @app.exception_handler(IdentityError)
    async def on_identity_error(request: Request, exc: IdentityError) -> Response:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)  # as HTTPException answers

    def signed_body(request: Request, raw: bytes) -> None:
        timestamp, signature = request.headers.get(TIMESTAMP_HEADER, ""), request.headers.get(SIGNATURE_HEADER, "")
        if not verify(settings.secret, timestamp, signature, raw, max_age_seconds=settings.max_age_seconds):
            raise HTTPException(401, "bad signature")

    async def signed_request(request: Request, model: type[_Model]) -> _Model:
        """The body, bounded, signed, and valid as `model` (413 / 401 / 422 otherwise)."""
        raw = await request.body()
        if len(raw) > REQUEST_BODY_MAX_BYTES:
            raise HTTPException(413, "body too large")
        signed_body(request, raw)
        try:
            return model.model_validate_json(raw)
        except ValidationError as e:
            raise HTTPException(422, str(e.errors(include_url=False)[:3])) from None

    @app.post("/v1/verifications", status_code=202)
    async def create_verification(request: Request) -> dict[str, Any]:
        return provider.create_verification(await signed_request(request, VerificationRequest))

    @app.post("/v1/merchant-checks")
    async def create_merchant_check(request: Request) -> dict[str, Any]:
        """Synchronous: the verdict is in the answer (`held` ones are read again later)."""
        return provider.create_merchant_check(await signed_request(request, MerchantCheckRequest))

    @app.get("/v1/merchant-checks/{check_id}")
    async def read_merchant_check(check_id: str, request: Request) -> dict[str, Any]:
        signed_body(request, b"")
        return provider.merchant_check(check_id)

    # ---------------------------------------------------------------- control (unsigned)
    @app.post("/control/merchant-checks/{check_id}/{verdict}")
    async def decide_held_check(
        check_id: str, verdict: Literal["approve", "reject"], body: ManualDecision
    ) -> dict[str, Any]:
        """A reviewer's decision on a held merchant check."""
        return provider.decide_held_check(check_id, verdict, body.reason)

    @app.get("/control/verifications/{request_id}")
    async def read_verification(request_id: str) -> dict[str, Any]:
        return provider.verification(request_id)

    @app.post("/control/verifications/{request_id}/{verdict}")
    async def decide_held(
        request_id: str, verdict: Literal["approve", "reject"], body: ManualDecision
    ) -> dict[str, Any]:
        return provider.decide_held(request_id, verdict, body.reason)

    @app.get("/control/rules")
    async def get_rules() -> dict[str, Any]:
        return provider.rules.model_dump()

    @app.put("/control/rules")
    async def put_rules(rules: Rules) -> dict[str, Any]:
        provider.rules = rules
        return rules.model_dump()

    return app
