"""The identity provider: person verifications decided by rules and called back, merchant checks answered at once.

Decision rules (`PUT /control/rules`, default: approve everything):
- `reject_documents` {document number: reason}, `reject_names` {name: reason}: rejected with that reason;
- `hold_documents` [document numbers]: wait until `POST /control/verifications/{id}/approve|reject`;
- `default`: `approve` | `reject` | `hold`.
Besides the rules, a document that fails its own check character is always rejected (`document_invalid`).

Merchant checks (onboarding's KYC step, docs/onboarding.md) answer at once: the business-licence number's check
character (unified social credit code, GB 32100), the legal representative's ID number (GB 11643), and the
settlement account's holder name against the bank's record (`bank_account_names` rule: account number → the
name the bank holds it under). Every finding is listed; `reject_documents` / `reject_names` apply to the
licence, the ID number and both names; `hold_documents` (or `default: hold`) keeps a check `held` until a
reviewer decides it.

A verification's verdict goes to its `callback_url` asynchronously, re-signed for every attempt, retried on the
schedule until the receiver answers 2xx. The protocol is docs/protocols/identity.md.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandboxes.common.notify import NotificationDispatcher, NotificationJob
from sandboxes.common.store import DocumentStore
from sandboxes.identity.crypto import signed_headers
from sandboxes.identity.settings import IdentitySettings

VERIFICATIONS, MERCHANT_CHECKS = "verifications", "merchant_checks"
_ID_CHECK = "10X98765432"
_USCC = "0123456789ABCDEFGHJKLMNPQRTUWXY"


class IdentityError(Exception):
    """A refusal the HTTP layer answers as `{"detail": ...}` with `status_code` (404 unknown, 409 decided)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code, self.detail = status_code, detail


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


class IdentityProvider:
    """The provider's records (verifications, merchant checks) and its rules; `app.py` calls it."""

    def __init__(self, settings: IdentitySettings, store: DocumentStore, dispatcher: NotificationDispatcher) -> None:
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self.rules = Rules()  # in memory: a restart approves everything again, as the control API documents

    # ------------------------------------------------------------------ person verifications
    def decide(self, req: VerificationRequest) -> tuple[str, str | None]:
        rules = self.rules
        if not document_ok(req.holder_type, req.document_number):
            return "rejected", "document_invalid"
        if req.document_number in rules.reject_documents:
            return "rejected", rules.reject_documents[req.document_number]
        if req.name in rules.reject_names:
            return "rejected", rules.reject_names[req.name]
        if req.document_number in rules.hold_documents or rules.default == "hold":
            return "held", None
        return ("approved", None) if rules.default == "approve" else ("rejected", "rejected_by_rule")

    def create_verification(self, req: VerificationRequest) -> dict[str, Any]:
        """Decided once per request_id: the same id again answers the stored result, marked `replayed`."""
        result, reason = self.decide(req)
        doc = {**req.model_dump(), "result": result, "reason": reason, "created_at_unix": time.time()}
        if not self.store.insert_if_absent(VERIFICATIONS, req.request_id, doc):
            existing = self.store.get(VERIFICATIONS, req.request_id) or {}
            return {"request_id": req.request_id, "status": existing.get("result"), "replayed": True}
        if result != "held":
            self.send_verdict(doc)
        return {"request_id": req.request_id, "status": result}

    def verification(self, request_id: str) -> dict[str, Any]:
        doc = self.store.get(VERIFICATIONS, request_id)
        if doc is None:
            raise IdentityError(404, "no such verification")
        return doc

    def decide_held(self, request_id: str, verdict: Literal["approve", "reject"], reason: str | None) -> dict[str, Any]:
        """A reviewer's decision on a held verification, called back like any verdict."""

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            if doc["result"] != "held":
                raise IdentityError(409, f"already {doc['result']}")
            return {
                **doc,
                "result": "approved" if verdict == "approve" else "rejected",
                "reason": reason or ("rejected_manually" if verdict == "reject" else None),
            }

        try:
            doc = self.store.update(VERIFICATIONS, request_id, change)
        except KeyError:
            raise IdentityError(404, "no such verification") from None
        self.send_verdict(doc)
        return doc

    def send_verdict(self, doc: dict[str, Any]) -> None:
        payload = {"request_id": doc["request_id"], "result": doc["result"], "reason": doc.get("reason")}

        def build() -> tuple[dict[str, str], bytes]:
            body = json.dumps(payload).encode()
            return signed_headers(self.settings.secret, body), body

        self.dispatcher.submit(
            NotificationJob(
                event_id=f"{doc['request_id']}:{doc['result']}",
                url=doc["callback_url"],
                build=build,
                event_type=f"verification.{doc['result']}",
                subject=doc["request_id"],
            )
        )

    # ------------------------------------------------------------------ merchant checks
    def check_merchant(self, req: MerchantCheckRequest) -> tuple[str, list[dict[str, str | None]]]:
        """Every finding at once (a merchant fixes them in one go), then the same rules as person checks."""
        rules = self.rules
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
            reject(
                "bank_account_name_mismatch",
                "bank_account.account_name",
                "the bank holds this account under another name",
            )
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

    def create_merchant_check(self, req: MerchantCheckRequest) -> dict[str, Any]:
        """The same check_id again answers the first verdict, whatever the body: the provider decides once."""
        result, reasons = self.check_merchant(req)
        doc = {"check_id": req.check_id, "result": result, "reasons": reasons, "created_at_unix": time.time()}
        if not self.store.insert_if_absent(MERCHANT_CHECKS, req.check_id, doc):
            doc = self.store.get(MERCHANT_CHECKS, req.check_id) or doc
        return merchant_check_view(doc)

    def merchant_check(self, check_id: str) -> dict[str, Any]:
        doc = self.store.get(MERCHANT_CHECKS, check_id)
        if doc is None:
            raise IdentityError(404, "no such check")
        return merchant_check_view(doc)

    def decide_held_check(
        self, check_id: str, verdict: Literal["approve", "reject"], reason: str | None
    ) -> dict[str, Any]:
        """A reviewer's decision on a held merchant check (read again by the client; no callback)."""

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            if doc["result"] != "held":
                raise IdentityError(409, f"already {doc['result']}")
            if verdict == "approve":
                return {**doc, "result": "approved"}
            rejection = {"code": "rejected_manually", "field": None, "detail": reason or "rejected by a reviewer"}
            return {**doc, "result": "rejected", "reasons": [rejection]}

        try:
            return self.store.update(MERCHANT_CHECKS, check_id, change)
        except KeyError:
            raise IdentityError(404, "no such check") from None


def merchant_check_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What the merchant-check API answers: the verdict and its findings, not the provider's bookkeeping."""
    return {k: doc[k] for k in ("check_id", "result", "reasons")}
