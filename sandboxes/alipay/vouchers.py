"""支付宝商家券 2.0 (`alipay.marketing.activity.ordervoucher.*`) and vouchers in trades (docs/protocols/alipay.md §12).

Why: Juhe mirrors a campaign as an Alipay voucher activity, sends vouchers to buyers and must read who
funded a discount from the trade's `voucher_detail_list`. The public SDK (alipay-sdk-python) has request
classes for every method here, so the conformance test drives them unmodified.

Facts relied on [H: Alipay opendocs via the SDK's request/response models and go-pay `doc/alipay.md`;
L where marked]:
- `create` {out_biz_no, activity_name, code_mode, voucher_send_mode_info{voucher_send_mode,
  voucher_send_rule_info{quantity, quantity_limit_per_user, publish_start_time, publish_end_time}},
  voucher_deduct_info{voucher_type: FIX_VOUCHER, fix_voucher_info{amount, floor_amount}},
  voucher_use_rule_info{voucher_use_time_info{period_type: ABSOLUTE, absolute_period_info{valid_begin_time,
  valid_end_time}}}} → {activity_id}. The activity exists for the merchant only once the asynchronous
  message `alipay.marketing.activity.message.created` arrives (the sandbox sends it at once).
- `send` {activity_id, out_biz_no, user_id | open_id} → {voucher_code} (`…message.received`);
  `use` / `refund` {activity_id, voucher_code, out_biz_no, biz_dt, total_fee?} mark a voucher redeemed
  outside an Alipay payment, or give it back (`…message.used`); `append` {activity_id, out_biz_no,
  voucher_quantity} raises the quantity (`…message.appended`); `stop` {activity_id, out_biz_no}
  (`…message.stopped`); `query` {activity_id} → the activity with `voucher_inventory_info{send_count,
  use_count}` and `activity_status` (ACTIVE | STOPPED). `out_biz_no` makes every call idempotent.
- Messages go to the app's message gateway (`POST /control/apps/{app_id}/message-gateway`), form-encoded
  `{msg_method, app_id, biz_content (JSON), utc_timestamp, version: 1.1, charset, notify_id, sign_type,
  sign}`, signed like notifications and retried until the literal `success` [L: field set].
- A buyer pays with a voucher (control approve `{"voucher_code"}`): the trade's `voucher_detail_list`
  [{id, name, type, amount, merchant_contribute, other_contribute, template_id, memo}] — a 商家券 is
  `ALIPAY_BIZ_VOUCHER` funded by the merchant; an Alipay-run voucher (`POST /control/vouchers/alipay`)
  is `ALIPAY_FIX_VOUCHER` funded by Alipay (`other_contribute`). `buyer_pay_amount = total − amount`,
  `receipt_amount` (商家实收) = total − merchant_contribute. The query shows the list only with
  `query_options: ["voucher_detail_list"]`; the notification always carries it (a JSON string).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandboxes.alipay.trades import BizError, beijing, invalid, parse_beijing, parse_yuan, yuan
from sandboxes.common.store import Document, DocumentStore

METHODS = tuple(
    f"alipay.marketing.activity.ordervoucher.{name}"
    for name in ("create", "send", "use", "refund", "append", "stop", "query")
)
ACTIVITIES, VOUCHERS, REQUESTS, GATEWAYS = "voucher_activities", "vouchers", "voucher_requests", "message_gateways"
OUT_BIZ_NO = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
ALIPAY_FUNDED = "ALIPAY"  # the owner of a voucher Alipay itself funds

Message = Callable[[str, str, dict[str, Any]], None]  # (app_id, msg_method, biz_content)


class AlipayVoucherRequest(BaseModel):
    """Alipay gives a buyer one of its own vouchers (a 红包 Alipay funds), usable at the app's merchant."""

    model_config = ConfigDict(extra="forbid")

    app_id: str
    buyer_id: str = Field(pattern=r"^2088[0-9]{12}$")
    name: str = Field(default="支付宝红包", min_length=1, max_length=32)
    amount_minor: int = Field(ge=1, le=10**9)
    floor_minor: int = Field(default=0, ge=0, le=10**12)


class Vouchers:
    def __init__(self, store: DocumentStore, clock: Callable[[], datetime], message: Message) -> None:
        self.store = store
        self.clock = clock
        self.message = message

    # ------------------------------------------------------------------ idempotency
    def _once(self, app_id: str, method: str, biz: dict[str, Any], act: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        out_biz_no = biz.get("out_biz_no")
        if not isinstance(out_biz_no, str) or OUT_BIZ_NO.fullmatch(out_biz_no) is None:
            raise invalid("out_biz_no must be 1-64 letters, digits, _ or -")
        key = f"{app_id}:{method}:{out_biz_no}"
        fingerprint = json.dumps(biz, sort_keys=True, ensure_ascii=False, default=str)
        return self.store.once(
            REQUESTS,
            key,
            fingerprint,
            act,
            lambda: BizError("INVALID_PARAMETER", "out_biz_no was used with another request"),
        )

    def _activity(self, app_id: str, biz: dict[str, Any]) -> Document:
        activity = self.store.get(ACTIVITIES, str(biz.get("activity_id") or ""))
        if activity is None or activity["app_id"] != app_id:
            raise BizError("ACTIVITY_NOT_EXIST", "活动不存在")
        return activity

    # ------------------------------------------------------------------ methods
    def handle(self, app_id: str, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        name = method.rsplit(".", 1)[1]
        if name == "query":
            return self.activity_view(self._activity(app_id, biz))
        actions: dict[str, Callable[[], dict[str, Any]]] = {
            "create": lambda: self._create(app_id, biz),
            "send": lambda: self._send(app_id, biz),
            "use": lambda: self._use(app_id, biz),
            "refund": lambda: self._refund(app_id, biz),
            "append": lambda: self._append(app_id, biz),
            "stop": lambda: self._stop(app_id, biz),
        }
        return self._once(app_id, name, biz, actions[name])

    def _create(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        name = biz.get("activity_name")
        if not isinstance(name, str) or not 1 <= len(name) <= 20:
            raise invalid("activity_name: 1-20 characters")
        deduct = biz.get("voucher_deduct_info")
        if not isinstance(deduct, dict) or deduct.get("voucher_type") != "FIX_VOUCHER":
            raise invalid("voucher_deduct_info.voucher_type must be FIX_VOUCHER (满减券)")
        fixed = deduct.get("fix_voucher_info")
        if not isinstance(fixed, dict):
            raise invalid("voucher_deduct_info.fix_voucher_info{amount, floor_amount} is required")
        amount = parse_yuan(fixed.get("amount"), "amount")
        floor = parse_yuan(fixed.get("floor_amount", "0"), "floor_amount", allow_zero=True)
        if floor and floor <= amount:
            raise invalid("floor_amount must exceed amount")
        send_mode = biz.get("voucher_send_mode_info")
        rule = send_mode.get("voucher_send_rule_info") if isinstance(send_mode, dict) else None
        if not isinstance(rule, dict):
            raise invalid("voucher_send_mode_info.voucher_send_rule_info is required")
        quantity = rule.get("quantity")
        per_user = rule.get("quantity_limit_per_user", 1)
        for label, value in (("quantity", quantity), ("quantity_limit_per_user", per_user)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000_000:
                raise invalid(f"voucher_send_rule_info.{label} must be a positive integer")
        use_time = ((biz.get("voucher_use_rule_info") or {}).get("voucher_use_time_info")) or {}
        period = use_time.get("absolute_period_info") or {}
        if use_time.get("period_type") != "ABSOLUTE":
            raise invalid("voucher_use_time_info.period_type must be ABSOLUTE")
        begin = parse_beijing(str(period.get("valid_begin_time", "")))
        end = parse_beijing(str(period.get("valid_end_time", "")))
        if begin is None or end is None or end <= begin:
            raise invalid("absolute_period_info{valid_begin_time < valid_end_time}, yyyy-MM-dd HH:mm:ss")
        activity_id = "2026" + f"{secrets.randbelow(10**24):024d}"
        activity: dict[str, Any] = {
            "activity_id": activity_id,
            "app_id": app_id,
            "owner": app_id,
            "activity_name": name,
            "code_mode": biz.get("code_mode", "MERCHANT_API"),
            "status": "ACTIVE",
            "amount_fen": amount,
            "floor_fen": floor,
            "quantity": quantity,
            "quantity_limit_per_user": per_user,
            "valid_begin_time": beijing(begin),
            "valid_end_time": beijing(end),
            "send_count": 0,
            "use_count": 0,
            "voucher_type": "ALIPAY_BIZ_VOUCHER",
        }
        self.store.put(ACTIVITIES, activity_id, activity)
        self.message(app_id, "alipay.marketing.activity.message.created", self._message_body(activity))
        return {"activity_id": activity_id}

    def _message_body(self, activity: Document, **extra: Any) -> dict[str, Any]:
        return {
            "activity_id": activity["activity_id"],
            "activity_name": activity["activity_name"],
            "activity_status": activity["status"],
            "event_time": beijing(self.clock()),
            **extra,
        }

    def _send(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        activity = self._activity(app_id, biz)
        buyer = biz.get("user_id") or biz.get("open_id")
        if not isinstance(buyer, str) or not buyer:
            raise invalid("user_id or open_id is required")
        if activity["status"] != "ACTIVE":
            raise BizError("ACTIVITY_STATUS_ERROR", "活动状态不允许发券")
        if self.clock() >= datetime.fromisoformat(_iso_of(activity["valid_end_time"])):
            raise BizError("ACTIVITY_STATUS_ERROR", "活动已结束")
        if activity["send_count"] >= activity["quantity"]:
            raise BizError("INVENTORY_NOT_ENOUGH", "券库存不足")
        held = sum(
            1 for v in self.store.list(VOUCHERS) if v["activity_id"] == activity["activity_id"] and v["buyer"] == buyer
        )
        if held >= activity["quantity_limit_per_user"]:
            raise BizError("USER_RECEIVE_LIMIT", "用户领取数量超限")
        voucher = self._issue(activity, buyer)
        self.store.put(ACTIVITIES, activity["activity_id"], {**activity, "send_count": activity["send_count"] + 1})
        self.message(
            app_id,
            "alipay.marketing.activity.message.received",
            self._message_body(activity, voucher_code=voucher["voucher_code"], user_id=buyer),
        )
        return {"voucher_code": voucher["voucher_code"]}

    def _issue(self, activity: Document, buyer: str) -> Document:
        voucher = {
            "voucher_code": f"{secrets.randbelow(10**16):016d}",
            "voucher_id": "2026" + f"{secrets.randbelow(10**20):020d}",
            "activity_id": activity["activity_id"],
            "buyer": buyer,
            "status": "AVAILABLE",
            "trade_no": None,
        }
        self.store.put(VOUCHERS, voucher["voucher_code"], voucher)
        return voucher

    def _voucher(self, activity: Document, code: Any) -> Document:
        voucher = self.store.get(VOUCHERS, str(code or ""))
        if voucher is None or voucher["activity_id"] != activity["activity_id"]:
            raise BizError("VOUCHER_NOT_EXIST", "券不存在")
        return voucher

    def _use(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        activity = self._activity(app_id, biz)
        voucher = self._voucher(activity, biz.get("voucher_code"))
        if voucher["status"] != "AVAILABLE":
            raise BizError("VOUCHER_STATUS_ERROR", f"券状态不可核销 ({voucher['status']})")
        self.store.put(
            VOUCHERS, voucher["voucher_code"], {**voucher, "status": "USED", "trade_no": biz.get("trade_no")}
        )
        self.store.put(ACTIVITIES, activity["activity_id"], {**activity, "use_count": activity["use_count"] + 1})
        self.message(
            app_id,
            "alipay.marketing.activity.message.used",
            self._message_body(activity, voucher_code=voucher["voucher_code"], user_id=voucher["buyer"]),
        )
        return {"activity_id": activity["activity_id"]}

    def _refund(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        activity = self._activity(app_id, biz)
        voucher = self._voucher(activity, biz.get("voucher_code"))
        if voucher["status"] != "USED":
            raise BizError("VOUCHER_STATUS_ERROR", f"券未核销 ({voucher['status']})")
        self.store.put(VOUCHERS, voucher["voucher_code"], {**voucher, "status": "AVAILABLE", "trade_no": None})
        self.store.put(ACTIVITIES, activity["activity_id"], {**activity, "use_count": activity["use_count"] - 1})
        return {"activity_id": activity["activity_id"]}

    def _append(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        activity = self._activity(app_id, biz)
        quantity = biz.get("voucher_quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= activity["quantity"]:
            raise invalid("voucher_quantity must be an integer above the current quantity")
        if activity["status"] != "ACTIVE":
            raise BizError("ACTIVITY_STATUS_ERROR", "活动状态不允许追加")
        self.store.put(ACTIVITIES, activity["activity_id"], {**activity, "quantity": quantity})
        self.message(app_id, "alipay.marketing.activity.message.appended", self._message_body(activity))
        return {"activity_id": activity["activity_id"]}

    def _stop(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        activity = self._activity(app_id, biz)
        stopped = {**activity, "status": "STOPPED"}
        self.store.put(ACTIVITIES, activity["activity_id"], stopped)
        if activity["status"] != "STOPPED":
            self.message(app_id, "alipay.marketing.activity.message.stopped", self._message_body(stopped))
        return {"activity_id": activity["activity_id"]}

    def activity_view(self, activity: Document) -> dict[str, Any]:
        return {
            "activity_id": activity["activity_id"],
            "activity_name": activity["activity_name"],
            "activity_status": activity["status"],
            "code_mode": activity["code_mode"],
            "voucher_deduct_info": {
                "voucher_type": "FIX_VOUCHER",
                "fix_voucher_info": {
                    "amount": yuan(activity["amount_fen"]),
                    "floor_amount": yuan(activity["floor_fen"]),
                },
            },
            "voucher_send_mode_info": {
                "voucher_send_mode": "REQUEST",
                "voucher_send_rule_info": {
                    "quantity": activity["quantity"],
                    "quantity_limit_per_user": activity["quantity_limit_per_user"],
                },
            },
            "voucher_use_rule_info": {
                "voucher_use_time_info": {
                    "period_type": "ABSOLUTE",
                    "absolute_period_info": {
                        "valid_begin_time": activity["valid_begin_time"],
                        "valid_end_time": activity["valid_end_time"],
                    },
                }
            },
            "voucher_inventory_info": {"send_count": activity["send_count"], "use_count": activity["use_count"]},
        }

    # ------------------------------------------------------------------ Alipay's own vouchers
    def issue_alipay_voucher(self, request: AlipayVoucherRequest) -> dict[str, Any]:
        if request.floor_minor and request.floor_minor <= request.amount_minor:
            raise BizError("INVALID_PARAMETER", "floor_minor must exceed amount_minor")
        now = self.clock()
        activity: dict[str, Any] = {
            "activity_id": "2026" + f"{secrets.randbelow(10**24):024d}",
            "app_id": request.app_id,
            "owner": ALIPAY_FUNDED,
            "activity_name": request.name,
            "code_mode": "ALIPAY",
            "status": "ACTIVE",
            "amount_fen": request.amount_minor,
            "floor_fen": request.floor_minor,
            "quantity": 1,
            "quantity_limit_per_user": 1,
            "valid_begin_time": beijing(now),
            "valid_end_time": beijing(now + timedelta(days=365)),  # (a year on from 29 February is no date)
            "send_count": 1,
            "use_count": 0,
            "voucher_type": "ALIPAY_FIX_VOUCHER",
        }
        self.store.put(ACTIVITIES, activity["activity_id"], activity)
        voucher = self._issue(activity, request.buyer_id)
        return {"voucher_code": voucher["voucher_code"], "activity_id": activity["activity_id"]}

    # ------------------------------------------------------------------ in a trade
    def detail_for(self, trade: Document, voucher_code: str) -> dict[str, Any]:
        """The `voucher_detail_list` entry a trade gets when its buyer pays with `voucher_code` (raises
        BizError when it cannot be used: nothing changes)."""
        voucher = self.store.get(VOUCHERS, voucher_code)
        if voucher is None:
            raise BizError("VOUCHER_NOT_EXIST", "券不存在")
        activity = self.store.get(ACTIVITIES, voucher["activity_id"])
        assert activity is not None
        if activity["app_id"] != trade["app_id"]:
            raise BizError("VOUCHER_NOT_APPLICABLE", "券不适用于该商户")
        if voucher["status"] != "AVAILABLE":
            raise BizError("VOUCHER_STATUS_ERROR", f"券状态不可用 ({voucher['status']})")
        if trade.get("buyer_id") and trade["buyer_id"] != voucher["buyer"]:
            raise BizError("VOUCHER_NOT_APPLICABLE", "券不属于该买家")
        now = self.clock()
        begin = datetime.fromisoformat(_iso_of(activity["valid_begin_time"]))
        end = datetime.fromisoformat(_iso_of(activity["valid_end_time"]))
        if not begin <= now < end:
            raise BizError("VOUCHER_STATUS_ERROR", "券不在有效期内")
        if trade["total_fen"] < max(activity["floor_fen"], activity["amount_fen"] + 1):
            raise BizError("VOUCHER_NOT_APPLICABLE", "订单金额未达到券的使用门槛")
        amount = activity["amount_fen"]
        merchant = amount if activity["owner"] != ALIPAY_FUNDED else 0
        return {
            "id": voucher["voucher_id"],
            "voucher_code": voucher_code,
            "name": activity["activity_name"],
            "type": activity["voucher_type"],
            "amount_fen": amount,
            "merchant_fen": merchant,
            "other_fen": amount - merchant,
            "template_id": activity["activity_id"],
            "buyer_id": voucher["buyer"],
        }

    def redeem(self, trade: Document) -> None:
        """The trade is paid: its vouchers are USED (and the merchant's activity hears `…message.used`)."""
        for detail in trade.get("vouchers") or []:
            voucher = self.store.get(VOUCHERS, detail["voucher_code"])
            assert voucher is not None
            if voucher["status"] == "USED" and voucher["trade_no"] == trade["trade_no"]:
                continue
            if voucher["status"] != "AVAILABLE":
                raise BizError("VOUCHER_STATUS_ERROR", "券已被使用")
            self.store.put(
                VOUCHERS, voucher["voucher_code"], {**voucher, "status": "USED", "trade_no": trade["trade_no"]}
            )
            activity = self.store.get(ACTIVITIES, voucher["activity_id"])
            assert activity is not None
            self.store.put(ACTIVITIES, activity["activity_id"], {**activity, "use_count": activity["use_count"] + 1})
            if activity["owner"] != ALIPAY_FUNDED:
                self.message(
                    activity["app_id"],
                    "alipay.marketing.activity.message.used",
                    self._message_body(
                        activity,
                        voucher_code=voucher["voucher_code"],
                        user_id=voucher["buyer"],
                        trade_no=trade["trade_no"],
                    ),
                )


def detail_list(trade: Document) -> list[dict[str, str]]:
    """A trade's `voucher_detail_list` as Alipay renders it (yuan strings)."""
    return [
        {
            "id": d["id"],
            "name": d["name"],
            "type": d["type"],
            "amount": yuan(d["amount_fen"]),
            "merchant_contribute": yuan(d["merchant_fen"]),
            "other_contribute": yuan(d["other_fen"]),
            "template_id": d["template_id"],
        }
        for d in trade.get("vouchers") or []
    ]


def discount_fen(trade: Document) -> tuple[int, int]:
    """(what vouchers took off the buyer's payment, the merchant-funded part of it)."""
    vouchers = trade.get("vouchers") or []
    return sum(d["amount_fen"] for d in vouchers), sum(d["merchant_fen"] for d in vouchers)


def _iso_of(beijing_text: str) -> str:
    moment = parse_beijing(beijing_text)
    assert moment is not None
    return moment.isoformat()
