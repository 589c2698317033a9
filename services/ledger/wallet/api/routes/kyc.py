"""KYC: submit a holder to the identity provider; take its signed, asynchronous verdict.

    unverified|rejected ──POST …/kyc──▶ pending ──signed callback──▶ verified | rejected (with reason)

The provider (sandboxes/identity here) is asked after `pending` is committed, so a fast callback always
finds the request; if the provider does not take it, the status goes back and the call answers 503.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from libs.common.errors import Problem
from libs.common.http import shared_tls_context
from libs.common.ids import new_id
from libs.common.web import UowDep
from services.ledger.api.deps import SettingsDep
from services.ledger.wallet.api.access import holder_scope
from services.ledger.wallet.api.routes.wallet import holder_response
from services.ledger.wallet.api.schemas import HolderResponse, KycCallbackRequest
from services.ledger.wallet.domain import errors, kyc, signing
from services.ledger.wallet.domain.errors import WalletError
from services.ledger.wallet.domain.kyc import KycStatus
from services.ledger.wallet.store import wallet as store

router = APIRouter(prefix="/v1/wallet", tags=["wallet"])
scoped = [Depends(holder_scope)]
CALLBACK_PATH = "/v1/wallet/kyc/callbacks"
CALLBACK_BODY_MAX_BYTES = 4096


@router.post("/holders/{holder_id}/kyc", status_code=202, dependencies=scoped)
async def submit_kyc(holder_id: str, uow: UowDep, settings: SettingsDep, request: Request) -> HolderResponse:
    request_id = new_id("kyc")
    async with uow.begin() as tx:
        holder = await store.require_holder(tx.conn, holder_id, for_update=True)
        old = KycStatus(holder["kyc_status"])
        new = kyc.submit(old)
        updated = await store.set_kyc(tx.conn, holder_id, old=old, new=new, reason=None, request_id=request_id)
        assert updated is not None  # the row is locked
        holder = updated
    base = (settings.wallet_public_base_url or str(request.base_url)).rstrip("/")
    body = json.dumps(
        {
            "request_id": request_id,
            "holder_type": holder["holder_type"],
            "name": holder["name"],
            "document_number": holder["document_number"],
            "phone": holder["phone"],
            "bank_card": holder["bank_card"],
            "legal_person": holder["legal_person"],
            "callback_url": base + CALLBACK_PATH,
        }
    ).encode()
    secret = settings.wallet_identity_secret.get_secret_value()
    now = int(time.time())
    headers = {
        "content-type": "application/json",
        signing.TIMESTAMP_HEADER: str(now),
        signing.SIGNATURE_HEADER: signing.sign(secret, now, body),
    }
    try:
        async with httpx.AsyncClient(
            timeout=settings.wallet_identity_timeout_seconds, verify=shared_tls_context()
        ) as client:
            r = await client.post(
                f"{settings.wallet_identity_base_url}/v1/verifications", content=body, headers=headers
            )
        taken = r.status_code in (200, 202)
    except httpx.HTTPError:
        taken = False
    if not taken:
        async with uow.begin() as tx:
            await store.set_kyc(tx.conn, holder_id, old=new, new=old, reason=holder["kyc_reason"], request_id=None)
        raise WalletError(errors.IDENTITY_UNAVAILABLE, "the identity provider did not accept the request")
    return holder_response(holder)


@router.post(CALLBACK_PATH.removeprefix("/v1/wallet"))
async def kyc_callback(request: Request, uow: UowDep, settings: SettingsDep) -> dict[str, Any]:
    """Verified signature first; then a compare-and-set from pending. A repeat of the same verdict is 200."""
    raw = await request.body()
    if len(raw) > CALLBACK_BODY_MAX_BYTES:
        raise Problem(errors.VALIDATION_FAILED, "callback body too large")
    ok = signing.verify(
        settings.wallet_identity_secret.get_secret_value(),
        request.headers.get(signing.TIMESTAMP_HEADER),
        request.headers.get(signing.SIGNATURE_HEADER),
        raw,
        now=time.time(),
        max_age_seconds=settings.wallet_callback_max_age_seconds,
    )
    if not ok:
        raise WalletError(errors.BAD_SIGNATURE, "callback signature or timestamp is not valid")
    try:
        body = KycCallbackRequest.model_validate_json(raw)
    except ValidationError as e:
        raise Problem(errors.VALIDATION_FAILED, str(e.errors(include_url=False)[:3])) from None
    verdict = KycStatus.VERIFIED if body.result == "approved" else KycStatus.REJECTED
    async with uow.begin() as tx:
        holder = await store.holder_by_kyc_request(tx.conn, body.request_id)
        if holder is None:
            raise WalletError(errors.HOLDER_NOT_FOUND, f"no verification {body.request_id}")
        status = KycStatus(holder["kyc_status"])
        if status is verdict:
            return {"holder_id": holder["holder_id"], "kyc_status": status, "replayed": True}
        new = kyc.decide(status, body.result == "approved")
        reason = body.reason if new is KycStatus.REJECTED else None
        await store.set_kyc(
            tx.conn, holder["holder_id"], old=status, new=new, reason=reason, request_id=body.request_id
        )
    return {"holder_id": holder["holder_id"], "kyc_status": new, "replayed": False}
