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

Merchant checks (`POST /v1/merchant-checks`, same signature; onboarding's KYC step, docs/onboarding.md) answer
at once: the business-licence number's check character (unified social credit code, GB 32100), the legal
representative's ID number (GB 11643), and the settlement account's holder name against the bank's record
(`bank_account_names` rule: account number → the name the bank holds it under). Every finding is listed;
`reject_documents` / `reject_names` apply to the licence, the ID number and both names; `hold_documents` (or
`default: hold`) keeps a check `held` until `POST /control/merchant-checks/{id}/approve|reject`, read again with
`GET /v1/merchant-checks/{id}` (signed over the empty body).

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
from typing import Any, Literal, TypeVar

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
    # The bank's record of who holds an account: {account number: holder name}. A merchant check whose
    # settlement account is listed with another name is rejected (`bank_account_name_mismatch`).
    bank_account_names: dict[str, str] = Field(default_factory=dict)


class Representative(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    id_number: str = Field(min_length=18, max_length=18)


class BankAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_name: str = Field(min_length=1, max_length=100)
    account_number: str = Field(pattern=r"^[0-9]{8,32}$")


class MerchantCheckRequest(BaseModel):
    """A merchant's KYC in one request: licence, legal representative, settlement account (Juhe's protocol)."""

    model_config = ConfigDict(extra="forbid")

    check_id: str = Field(min_length=1, max_length=64)
    entity_type: Literal["individual", "individual_business", "company"]
    legal_name: str = Field(min_length=1, max_length=100)
    business_licence_number: str | None = Field(default=None, min_length=18, max_length=18)
    legal_representative: Representative
    bank_account: BankAccount


class ManualDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=200)


_Model = TypeVar("_Model", bound=BaseModel)
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
        req = await signed_request(request, VerificationRequest)
        result, reason = decide(req)
        doc = {**req.model_dump(), "result": result, "reason": reason, "created_at_unix": time.time()}
        if not store.insert_if_absent("verifications", req.request_id, doc):
            existing = store.get("verifications", req.request_id) or {}
            return {"request_id": req.request_id, "status": existing.get("result"), "replayed": True}
        if result != "held":
            send_verdict(doc)
        return {"request_id": req.request_id, "status": result}

    def check_merchant(req: MerchantCheckRequest) -> tuple[str, list[dict[str, str | None]]]:
        """Every finding at once (a merchant fixes them in one go), then the same rules as person checks."""
        rules = state["rules"]
        reasons: list[dict[str, str | None]] = []

        def reject(code: str, field: str | None, detail: str) -> None:
            reasons.append({"code": code, "field": field, "detail": detail})

        licence = req.business_licence_number
        if req.entity_type != "individual" and licence is None:
            reject("business_licence_missing", "business_licence_number", "a business needs its licence number")
        if licence is not None and not document_ok("merchant", licence):
            reject("business_licence_invalid", "business_licence_number", "the check character does not match")
        rep = req.legal_representative
        if not document_ok("person", rep.id_number):
            reject("id_number_invalid", "legal_representative.id_number", "the check character does not match")
        account = req.bank_account
        held_by = rules.bank_account_names.get(account.account_number)
        if held_by is not None and held_by != account.account_name:
            reject("bank_account_name_mismatch", "bank_account.account_name",
                   "the bank holds this account under another name")  # fmt: skip
        for number, field in ((licence, "business_licence_number"), (rep.id_number, "legal_representative.id_number")):
            if number is not None and number in rules.reject_documents:
                reject("document_rejected", field, rules.reject_documents[number])
        for name, field in ((req.legal_name, "legal_name"), (rep.name, "legal_representative.name")):
            if name in rules.reject_names:
                reject("name_rejected", field, rules.reject_names[name])
        if reasons:
            return "rejected", reasons
        if rules.default == "reject":
            return "rejected", [{"code": "rejected_by_rule", "field": None, "detail": "the default rule rejects"}]
        if rules.default == "hold" or {licence, rep.id_number} & set(rules.hold_documents):
            return "held", []
        return "approved", []

    def signed_body(request: Request, raw: bytes) -> None:
        timestamp, signature = request.headers.get(TIMESTAMP_HEADER, ""), request.headers.get(SIGNATURE_HEADER, "")
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= settings.max_age_seconds
        if not fresh or not hmac.compare_digest(sign(settings.secret, int(timestamp or 0), raw), signature):
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

    @app.post("/v1/merchant-checks")
    async def create_merchant_check(request: Request) -> dict[str, Any]:
        """Synchronous: the verdict is in the answer (`held` ones are read again later). The same check_id
        again answers the first verdict, whatever the body: the provider decides once per check."""
        req = await signed_request(request, MerchantCheckRequest)
        result, reasons = check_merchant(req)
        doc = {"check_id": req.check_id, "result": result, "reasons": reasons, "created_at_unix": time.time()}
        if not store.insert_if_absent("merchant_checks", req.check_id, doc):
            doc = store.get("merchant_checks", req.check_id) or doc
        return {k: doc[k] for k in ("check_id", "result", "reasons")}

    @app.get("/v1/merchant-checks/{check_id}")
    async def read_merchant_check(check_id: str, request: Request) -> dict[str, Any]:
        signed_body(request, b"")
        doc = store.get("merchant_checks", check_id)
        if doc is None:
            raise HTTPException(404, "no such check")
        return {k: doc[k] for k in ("check_id", "result", "reasons")}

    @app.post("/control/merchant-checks/{check_id}/{verdict}")
    async def decide_held_check(
        check_id: str, verdict: Literal["approve", "reject"], body: ManualDecision
    ) -> dict[str, Any]:
        """A reviewer's decision on a held merchant check."""

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            if doc["result"] != "held":
                raise HTTPException(409, f"already {doc['result']}")
            if verdict == "approve":
                return {**doc, "result": "approved"}
            reason = {"code": "rejected_manually", "field": None, "detail": body.reason or "rejected by a reviewer"}
            return {**doc, "result": "rejected", "reasons": [reason]}

        try:
            return store.update("merchant_checks", check_id, change)
        except KeyError:
            raise HTTPException(404, "no such check") from None

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
