"""Identity provider sandbox: takes a verification request, answers 202, decides by rules, and calls back.

Protocol (Juhe's own, labelled as such; real providers — e.g. the public-security ID check or bank-card
4-factor services — each have their own): the request and the callback are JSON signed with HMAC-SHA256 over
"<unix timestamp>.<raw body>" with a shared secret, in headers `X-Identity-Timestamp` and
`X-Identity-Signature` (hex). The sandbox is strict: a bad or stale signature is 401, bad fields are 422.

Decision rules (`PUT /control/rules`, default: approve everything):
- `reject_documents` {document number: reason}, `reject_names` {name: reason}: rejected with that reason;
- `hold_documents` [document numbers]: wait until `POST /control/verifications/{id}/approve|reject`;
- `default`: `approve` | `reject` | `hold`.
Besides the rules, a document that fails its own check character is always rejected (`document_invalid`).

The verdict goes to `callback_url` asynchronously, re-signed for every attempt, retried on the schedule
until the receiver answers 2xx. Must not import anything from libs/ or services/.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandboxes.common.control import build_common_router
from sandboxes.common.faults import FaultMiddleware, FaultSettings
from sandboxes.common.notify import NotificationDispatcher, NotificationJob
from sandboxes.common.paths import env_float, env_int, sandbox_data_dir
from sandboxes.common.store import DocumentStore

CALLBACK_SCHEDULE_SECONDS = (0, 5, 15, 60, 300, 1800)
SIGNATURE_MAX_AGE_SECONDS = 300
TIMESTAMP_HEADER = "X-Identity-Timestamp"
SIGNATURE_HEADER = "X-Identity-Signature"
REQUEST_BODY_MAX_BYTES = 8192
DEMO_SECRET = "demo-identity-secret"


@dataclass(frozen=True)
class IdentitySettings:
    secret: str = DEMO_SECRET
    notify_scale: float = 1.0
    data_dir: str | None = None
    max_age_seconds: int = SIGNATURE_MAX_AGE_SECONDS

    @classmethod
    def from_env(cls) -> IdentitySettings:
        return cls(
            secret=os.environ.get("JUHE_SANDBOX_IDENTITY_SECRET", DEMO_SECRET),
            notify_scale=env_float("JUHE_SANDBOX_NOTIFY_SCALE", 1.0),
            data_dir=os.environ.get("JUHE_DATA_DIR"),
            max_age_seconds=env_int("JUHE_SANDBOX_IDENTITY_MAX_AGE_SECONDS", SIGNATURE_MAX_AGE_SECONDS),
        )


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


class VerificationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=64)
    holder_type: Literal["person", "merchant"]
    name: str = Field(min_length=1, max_length=100)
    document_number: str = Field(min_length=18, max_length=18)
    phone: str | None = Field(default=None, max_length=20)
    bank_card: str | None = Field(default=None, max_length=32)
    legal_person: str | None = Field(default=None, max_length=100)
    callback_url: str = Field(pattern=r"^https?://", max_length=500)


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: Literal["approve", "reject", "hold"] = "approve"
    reject_documents: dict[str, str] = Field(default_factory=dict)
    reject_names: dict[str, str] = Field(default_factory=dict)
    hold_documents: list[str] = Field(default_factory=list)


class ManualDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=200)


_ID_CHECK = "10X98765432"
_USCC = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def document_ok(holder_type: str, number: str) -> bool:
    """The provider re-checks the check character itself (GB 11643 / GB 32100): it trusts no client."""
    try:
        if holder_type == "person":
            total = sum(int(c) * pow(2, 17 - i, 11) for i, c in enumerate(number[:17]))
            return _ID_CHECK[total % 11] == number[17]
        total = sum(_USCC.index(c) * pow(3, i, 31) for i, c in enumerate(number[:17]))
        return _USCC[(31 - total % 31) % 31] == number[17]
    except (ValueError, IndexError):
        return False


def create_app(settings: IdentitySettings) -> FastAPI:
    faults = FaultSettings()
    dispatcher = NotificationDispatcher(
        schedule_seconds=CALLBACK_SCHEDULE_SECONDS, is_acknowledged=lambda r: 200 <= r.status_code < 300,
        faults=faults, scale=settings.notify_scale,
    )  # fmt: skip
    store = DocumentStore(sandbox_data_dir("identity", settings.data_dir) / "store.sqlite3")
    state: dict[str, Rules] = {"rules": Rules()}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await dispatcher.start()
        yield
        await dispatcher.stop()
        store.close()

    app = FastAPI(title="Juhe identity sandbox", lifespan=lifespan)
    app.include_router(build_common_router(channel="identity", faults=faults, dispatcher=dispatcher))
    app.add_middleware(
        FaultMiddleware, faults=faults,
        error_response=lambda: JSONResponse({"code": "SYSTEM_ERROR", "message": "try later"}, status_code=500),
    )  # fmt: skip

    def send_verdict(doc: dict[str, Any]) -> None:
        payload = {"request_id": doc["request_id"], "result": doc["result"], "reason": doc.get("reason")}

        def build() -> tuple[dict[str, str], bytes]:
            body = json.dumps(payload).encode()
            now = int(time.time())
            return {"content-type": "application/json", TIMESTAMP_HEADER: str(now),
                    SIGNATURE_HEADER: sign(settings.secret, now, body)}, body  # fmt: skip

        dispatcher.submit(NotificationJob(
            event_id=f"{doc['request_id']}:{doc['result']}", url=doc["callback_url"], build=build,
            event_type=f"verification.{doc['result']}", subject=doc["request_id"],
        ))  # fmt: skip

    def decide(req: VerificationRequest) -> tuple[str, str | None]:
        rules = state["rules"]
        if not document_ok(req.holder_type, req.document_number):
            return "rejected", "document_invalid"
        if req.document_number in rules.reject_documents:
            return "rejected", rules.reject_documents[req.document_number]
        if req.name in rules.reject_names:
            return "rejected", rules.reject_names[req.name]
        if req.document_number in rules.hold_documents or rules.default == "hold":
            return "held", None
        return ("approved", None) if rules.default == "approve" else ("rejected", "rejected_by_rule")

    @app.post("/v1/verifications", status_code=202)
    async def create_verification(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > REQUEST_BODY_MAX_BYTES:
            raise HTTPException(413, "body too large")
        timestamp, signature = request.headers.get(TIMESTAMP_HEADER, ""), request.headers.get(SIGNATURE_HEADER, "")
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= settings.max_age_seconds
        if not fresh or not hmac.compare_digest(sign(settings.secret, int(timestamp or 0), raw), signature):
            raise HTTPException(401, "bad signature")
        try:
            req = VerificationRequest.model_validate_json(raw)
        except ValidationError as e:
            raise HTTPException(422, str(e.errors(include_url=False)[:3])) from None
        result, reason = decide(req)
        doc = {**req.model_dump(), "result": result, "reason": reason, "created_at_unix": time.time()}
        if not store.insert_if_absent("verifications", req.request_id, doc):
            existing = store.get("verifications", req.request_id) or {}
            return {"request_id": req.request_id, "status": existing.get("result"), "replayed": True}
        if result != "held":
            send_verdict(doc)
        return {"request_id": req.request_id, "status": result}

    @app.get("/control/verifications/{request_id}")
    async def read_verification(request_id: str) -> dict[str, Any]:
        doc = store.get("verifications", request_id)
        if doc is None:
            raise HTTPException(404, "no such verification")
        return doc

    @app.post("/control/verifications/{request_id}/{verdict}")
    async def decide_held(
        request_id: str, verdict: Literal["approve", "reject"], body: ManualDecision
    ) -> dict[str, Any]:
        def change(doc: dict[str, Any]) -> dict[str, Any]:
            if doc["result"] != "held":
                raise HTTPException(409, f"already {doc['result']}")
            return {**doc, "result": "approved" if verdict == "approve" else "rejected",
                    "reason": body.reason or ("rejected_manually" if verdict == "reject" else None)}  # fmt: skip

        try:
            doc = store.update("verifications", request_id, change)
        except KeyError:
            raise HTTPException(404, "no such verification") from None
        send_verdict(doc)
        return doc

    @app.get("/control/rules")
    async def get_rules() -> dict[str, Any]:
        return state["rules"].model_dump()

    @app.put("/control/rules")
    async def put_rules(rules: Rules) -> dict[str, Any]:
        state["rules"] = rules
        return rules.model_dump()

    return app
