"""商家转账 (merchant transfer to a user's WeChat change), the upgraded API (docs/protocols/wechatpay.md §13, [M]).

`POST /v3/fund-app/mch-transfer/transfer-bills` answers `WAIT_USER_CONFIRM` with a `package_info`
the merchant hands to WeChat (JSAPI `requestMerchantTransfer`) so the user confirms receipt there;
only then does the money move (`TRANSFERING` → `SUCCESS`). The merchant may cancel while the bill
waits (`.../out-bill-no/{no}/cancel` → `CANCELLED`); a bill nobody confirms within
`transfer_confirm_seconds` (a day on WeChat) ends `CANCELLED` too [L on the exact end state]. Each
final state is called back (`MCHTRANSFER.BILL.FINISHED`, resource `mch_payment`, AES-GCM).

The sandbox plays the user: `POST /control/transfer-bills/{out_bill_no}/confirm` (the user taps
receive in WeChat), `/fail {"fail_reason"}` (e.g. the real-name check failed) and `/expire` (the
confirmation window ends now).
States: ACCEPTED is skipped; WAIT_USER_CONFIRM → TRANSFERING → SUCCESS | FAIL; WAIT_USER_CONFIRM →
CANCELLED (merchant cancel or expiry).
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from sandboxes.common.store import Document
from sandboxes.wechatpay.sandbox import ControlError, Sandbox, WxError, now_cst, rfc3339

if TYPE_CHECKING:  # app.py builds the object and imports this module
    from sandboxes.wechatpay.app import V3Http

BILLS = "transfer_bills"
FIELDS = frozenset(
    {
        "appid",
        "out_bill_no",
        "transfer_scene_id",
        "openid",
        "user_name",
        "transfer_amount",
        "transfer_remark",
        "notify_url",
        "user_recv_perception",
        "transfer_scene_report_infos",
    }
)
OUT_BILL_NO = re.compile(r"[0-9A-Za-z]{5,32}")
AMOUNT_MIN_FEN = 10  # 0.1 yuan
USER_NAME_FROM_FEN = 200_000  # a name is required from 2,000 yuan
FINAL = frozenset({"SUCCESS", "FAIL", "CANCELLED"})
FAIL_REASONS = frozenset(
    {
        "ACCOUNT_FROZEN",
        "REAL_NAME_CHECK_FAIL",
        "NAME_NOT_CORRECT",
        "OPENID_INVALID",
        "TRANSFER_QUOTA_EXCEED",
        "DAY_RECEIVED_QUOTA_EXCEED",
        "OVERDUE_CLOSE",
    }
)


def _view(bill: Document, *, full: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "out_bill_no": bill["out_bill_no"],
        "transfer_bill_no": bill["transfer_bill_no"],
        "create_time": bill["create_time"],
        "state": bill["state"],
    }
    if bill["state"] == "WAIT_USER_CONFIRM":
        view["package_info"] = bill["package_info"]
    if bill.get("fail_reason"):
        view["fail_reason"] = bill["fail_reason"]
    if full:
        view.update(
            mch_id=bill["mchid"],
            appid=bill["appid"],
            transfer_amount=bill["transfer_amount"],
            transfer_remark=bill["transfer_remark"],
            openid=bill["openid"],
            update_time=bill["update_time"],
        )
    return view


class Transfers:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.store = sandbox.store
        sandbox.on_start(self._rearm)

    def _rearm(self) -> None:
        for bill in self.store.list(BILLS):
            if bill["state"] == "WAIT_USER_CONFIRM":
                self._expire_later(bill["key"], bill["confirm_due_unix"] - time.time())

    def _expire_later(self, key: str, delay: float) -> None:
        self.sandbox.schedule(
            delay, lambda: self.finish(key, "CANCELLED", "OVERDUE_CLOSE", allowed=("WAIT_USER_CONFIRM",))
        )

    def create(self, merchant: Document, body: dict[str, Any], *, serial: str | None) -> dict[str, Any]:
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise WxError(400, "PARAM_ERROR", f"unknown fields: {', '.join(unknown)}")
        for name in ("appid", "out_bill_no", "transfer_scene_id", "openid", "transfer_remark"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise WxError(400, "PARAM_ERROR", f"{name} is required")
        if body["appid"] not in merchant["appids"]:
            raise WxError(400, "APPID_MCHID_NOT_MATCH", "appid is not bound to mchid")
        if not OUT_BILL_NO.fullmatch(body["out_bill_no"]):
            raise WxError(400, "PARAM_ERROR", "out_bill_no must be 5-32 letters or digits")
        amount = body.get("transfer_amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < AMOUNT_MIN_FEN:
            raise WxError(400, "PARAM_ERROR", f"transfer_amount must be an integer ≥ {AMOUNT_MIN_FEN} fen")
        if amount >= USER_NAME_FROM_FEN and not body.get("user_name"):
            raise WxError(400, "PARAM_ERROR", "user_name is required from 2000 yuan")
        request = dict(body)  # compared on a retry with the name decrypted (RSA-OAEP differs every time)
        if body.get("user_name"):
            request["user_name"] = self.sandbox.decrypt_sensitive(serial, body["user_name"], "user_name")
        if len(body["transfer_remark"]) > 32:
            raise WxError(400, "PARAM_ERROR", "transfer_remark is at most 32 characters")
        key = f"{merchant['mchid']}:{body['out_bill_no']}"
        now = rfc3339(now_cst())
        bill = {
            "key": key,
            "mchid": merchant["mchid"],
            "appid": body["appid"],
            "out_bill_no": body["out_bill_no"],
            "transfer_bill_no": "1330" + f"{secrets.randbelow(10**28):028d}",
            "openid": body["openid"],
            "transfer_amount": amount,
            "transfer_remark": body["transfer_remark"],
            "state": "WAIT_USER_CONFIRM",
            "package_info": base64.b64encode(secrets.token_bytes(96)).decode("ascii"),
            "create_time": now,
            "update_time": now,
            "notify_url": body.get("notify_url"),
            "request": request,
            "confirm_due_unix": time.time() + self.sandbox.settings.transfer_confirm_seconds,
        }
        with self.store.transaction():
            existing = self.store.get(BILLS, key)
            if existing is not None:
                if existing["request"] != request:
                    raise WxError(400, "INVALID_REQUEST", "out_bill_no already used with different parameters")
                return _view(existing, full=False)
            self.store.put(BILLS, key, bill)
        self._expire_later(key, self.sandbox.settings.transfer_confirm_seconds)
        return _view(bill, full=False)

    def get(
        self, merchant: Document, *, out_bill_no: str | None = None, transfer_bill_no: str | None = None
    ) -> dict[str, Any]:
        bill = (
            self.store.get(BILLS, f"{merchant['mchid']}:{out_bill_no}")
            if out_bill_no
            else next(
                (
                    b
                    for b in self.store.list(BILLS)
                    if b["mchid"] == merchant["mchid"] and b["transfer_bill_no"] == transfer_bill_no
                ),
                None,
            )
        )
        if bill is None:
            raise WxError(404, "NOT_FOUND", "转账单据不存在")
        return _view(bill, full=True)

    def cancel(self, merchant: Document, out_bill_no: str) -> dict[str, Any]:
        key = f"{merchant['mchid']}:{out_bill_no}"
        if self.store.get(BILLS, key) is None:
            raise WxError(404, "NOT_FOUND", "转账单据不存在")
        try:
            bill = self.finish(key, "CANCELLED", None, allowed=("WAIT_USER_CONFIRM", "ACCEPTED", "CANCELLED"))
        except ControlError as exc:
            raise WxError(400, "INVALID_REQUEST", f"转账单据状态不允许撤销: {exc.message}") from exc
        return {
            "out_bill_no": bill["out_bill_no"],
            "transfer_bill_no": bill["transfer_bill_no"],
            "state": bill["state"],
            "update_time": bill["update_time"],
        }

    def finish(self, key: str, state: str, fail_reason: str | None, *, allowed: tuple[str, ...]) -> Document:
        """Move a bill on; a final state is called back (once: a bill already there is returned)."""

        def change(current: Document) -> Document:
            if current["state"] not in allowed:
                raise ControlError(409, f"transfer bill is {current['state']}")
            return {**current, "state": state, "fail_reason": fail_reason, "update_time": rfc3339(now_cst())}

        before = self.store.get(BILLS, key)
        bill = self.store.update(BILLS, key, change)
        if before is not None and before["state"] != state and state in FINAL and bill.get("notify_url"):
            merchant = self.store.get("merchants", bill["mchid"]) or {}
            resource = {
                k: v for k, v in _view(bill, full=True).items() if k not in ("appid", "transfer_remark", "package_info")
            }
            self.sandbox._notify(
                merchant,
                url=bill["notify_url"],
                event_type="MCHTRANSFER.BILL.FINISHED",
                summary="商家转账单据终态通知",
                original_type="mch_payment",
                resource=resource,
                subject=bill["out_bill_no"],
            )
        return bill

    def find_for_control(self, out_bill_no: str) -> Document:
        matches = [b for b in self.store.list(BILLS) if b["out_bill_no"] == out_bill_no]
        if len(matches) != 1:
            raise ControlError(404 if not matches else 409, f"{len(matches)} transfer bills numbered {out_bill_no}")
        return matches[0]


def install_routes(app: FastAPI, sandbox: Sandbox, v3: V3Http) -> Transfers:
    authenticated, json_body, wx_response = v3.authenticated, v3.json_body, v3.wx_response
    transfers = Transfers(sandbox)
    prefix = "/v3/fund-app/mch-transfer/transfer-bills"

    @app.post(prefix)
    async def create_transfer(request: Request) -> Response:
        merchant, body = await authenticated(request)
        return wx_response(
            200, transfers.create(merchant, json_body(request, body), serial=request.headers.get("wechatpay-serial"))
        )

    @app.get(prefix + "/out-bill-no/{out_bill_no}")
    async def get_transfer(out_bill_no: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, transfers.get(merchant, out_bill_no=out_bill_no))

    @app.get(prefix + "/transfer-bill-no/{transfer_bill_no}")
    async def get_transfer_by_no(transfer_bill_no: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)
        return wx_response(200, transfers.get(merchant, transfer_bill_no=transfer_bill_no))

    @app.post(prefix + "/out-bill-no/{out_bill_no}/cancel")
    async def cancel_transfer(out_bill_no: str, request: Request) -> Response:
        merchant, _ = await authenticated(request)  # no body (the SDK sends none)
        return wx_response(200, transfers.cancel(merchant, out_bill_no))

    @app.post("/control/transfer-bills/{out_bill_no}/confirm")
    async def confirm_transfer(out_bill_no: str) -> dict[str, Any]:
        """The user confirms receipt in WeChat: the money moves and the bill succeeds."""
        bill = transfers.find_for_control(out_bill_no)
        transfers.finish(bill["key"], "TRANSFERING", None, allowed=("WAIT_USER_CONFIRM",))
        return _view(transfers.finish(bill["key"], "SUCCESS", None, allowed=("TRANSFERING",)), full=True)

    @app.post("/control/transfer-bills/{out_bill_no}/expire")
    async def expire_transfer(out_bill_no: str) -> dict[str, Any]:
        """The confirmation window ends now (instead of after transfer_confirm_seconds)."""
        bill = transfers.find_for_control(out_bill_no)
        return _view(
            transfers.finish(bill["key"], "CANCELLED", "OVERDUE_CLOSE", allowed=("WAIT_USER_CONFIRM",)), full=True
        )

    @app.post("/control/transfer-bills/{out_bill_no}/fail")
    async def fail_transfer(out_bill_no: str, request: Request) -> dict[str, Any]:
        body = await request.body()
        reason = (json_body(request, body) if body else {}).get("fail_reason", "REAL_NAME_CHECK_FAIL")
        if reason not in FAIL_REASONS:
            raise ControlError(422, f"fail_reason must be one of {sorted(FAIL_REASONS)}")
        bill = transfers.find_for_control(out_bill_no)
        return _view(
            transfers.finish(bill["key"], "FAIL", reason, allowed=("WAIT_USER_CONFIRM", "TRANSFERING")), full=True
        )

    return transfers
