"""create_app(settings) → the bank payout sandbox: signed payout API, control API, daily statements.

Protocol (Juhe's own, documented in README.md; there is no public bank payout standard to copy).
The sandbox is strict: unsigned, stale or wrongly signed requests are refused with 401.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from sandboxes.bank import bills
from sandboxes.bank.crypto import CLIENT_HEADER, HEADER, sign, verify
from sandboxes.bank.sandbox import FAILURE_CODES, Bank, BankError
from sandboxes.bank.settings import NOTIFY_SCHEDULE_SECONDS, BankSettings
from sandboxes.common.control import build_common_router
from sandboxes.common.faults import FaultMiddleware, FaultSettings
from sandboxes.common.notify import NotificationDispatcher
from sandboxes.common.paths import sandbox_data_dir
from sandboxes.common.runner import NATIVE_TELEMETRY_OFF
from sandboxes.common.store import DocumentStore


class PayoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payout_no: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    amount_minor: StrictInt = Field(gt=0, le=10**13)
    currency: Literal["CNY"]
    account_no: str = Field(min_length=4, max_length=34)
    account_name: str = Field(min_length=1, max_length=128)
    notify_url: str | None = Field(default=None, max_length=512)
    memo: str | None = Field(default=None, max_length=128)


class ClientRequest(BaseModel):
    client_id: str | None = Field(default=None, max_length=64)
    # A deployment may provision the secret itself (as a bank hands one over out of band): the launcher
    # must give it to settlement before the sandbox is up. Absent: the bank generates one.
    secret: str | None = Field(default=None, min_length=32, max_length=128)


class AccountRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_no: str = Field(min_length=4, max_length=34)
    account_name: str
    status: Literal["open", "closed"] = "open"
    mode: Literal["normal", "timeout"] = "normal"


class CompleteRequest(BaseModel):
    status: Literal["SUCCEEDED", "FAILED"]
    failure_code: str | None = None


def _error(status_code: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status_code)


def create_app(settings: BankSettings) -> FastAPI:
    faults = FaultSettings()
    dispatcher = NotificationDispatcher(
        schedule_seconds=NOTIFY_SCHEDULE_SECONDS,
        is_acknowledged=lambda r: 200 <= r.status_code < 300,
        faults=faults,
        scale=settings.notify_scale,
    )
    directory = sandbox_data_dir("bank", settings.data_dir)
    bank = Bank(settings, DocumentStore(directory / "store.sqlite3"), dispatcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await dispatcher.start()
        yield
        bank.stop()
        await dispatcher.stop()

    app = FastAPI(title="Bank payout sandbox", lifespan=lifespan, telemetry=NATIVE_TELEMETRY_OFF)
    app.state.bank = bank
    app.include_router(build_common_router(channel="bank", faults=faults, dispatcher=dispatcher))
    app.add_middleware(
        FaultMiddleware, faults=faults, error_response=lambda: _error(500, "SYSTEM_ERROR", "bank system busy")
    )

    @app.exception_handler(BankError)
    async def on_bank_error(request: Request, exc: BankError) -> Response:
        return _error(exc.status_code, exc.code, exc.message)

    async def authenticate(request: Request, payload: bytes) -> str:
        client_id = request.headers.get(CLIENT_HEADER, "")
        secret = bank.secret_of(client_id)
        if secret is None or not verify(
            secret, payload, request.headers.get(HEADER), skew_seconds_max=settings.clock_skew_seconds_max
        ):
            raise BankError(401, "SIGN_ERROR", "unknown client or bad signature")
        return client_id

    def signed(client_id: str, status_code: int, body: dict[str, Any]) -> Response:
        raw = json.dumps(body, separators=(",", ":")).encode()
        secret = bank.secret_of(client_id) or ""
        return Response(
            raw, status_code=status_code, media_type="application/json", headers={HEADER: sign(secret, raw)}
        )

    @app.post("/v1/payouts")
    async def create_payout(request: Request) -> Response:
        raw = await request.body()
        client_id = await authenticate(request, raw)
        try:
            body = PayoutRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise BankError(400, "PARAM_ERROR", str(exc.errors()[0]["msg"])) from exc
        payout, created = bank.create_payout(client_id, body.model_dump())
        return signed(client_id, 202 if created else 200, bank.view(payout))

    @app.get("/v1/payouts/{payout_no}")
    async def get_payout(payout_no: str, request: Request) -> Response:
        client_id = await authenticate(request, request.url.path.encode())
        return signed(client_id, 200, bank.view(bank.get_payout(client_id, payout_no)))

    @app.get("/v1/statements/{day}")
    async def statement(day: date, request: Request) -> Response:
        """The day's payout statement file (CSV, CRLF), signed like every answer."""
        client_id = await authenticate(request, request.url.path.encode())
        raw = bills.statement_csv(bank, client_id, day).encode()
        secret = bank.secret_of(client_id) or ""
        return PlainTextResponse(raw, media_type="text/csv", headers={HEADER: sign(secret, raw)})

    # ---------------------------------------------------------------- control (unsigned)
    @app.post("/control/clients")
    async def register_client(body: ClientRequest) -> dict[str, Any]:
        return bank.register_client(body.client_id, body.secret)

    @app.post("/control/accounts")
    async def put_account(body: AccountRequest) -> dict[str, Any]:
        return bank.put_account(body.model_dump())

    @app.post("/control/payouts/{client_id}/{payout_no}/complete")
    async def complete(client_id: str, payout_no: str, body: CompleteRequest) -> dict[str, Any]:
        if body.status == "FAILED" and body.failure_code not in FAILURE_CODES:
            raise BankError(422, "PARAM_ERROR", f"failure_code must be one of {sorted(FAILURE_CODES)}")
        bank.get_payout(client_id, payout_no)
        return bank.view(bank.finish(f"{client_id}:{payout_no}", body.status, body.failure_code))

    return app
