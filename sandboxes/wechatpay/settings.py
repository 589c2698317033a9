"""Sandbox settings, read once from the environment at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sandboxes.common.paths import env_float, env_int

# WeChat Pay's callback retry schedule, 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h
# (docs/protocols/wechatpay.md §5); scaled by notify_scale.
NOTIFY_SCHEDULE_SECONDS: tuple[float, ...] = (
    15,
    15,
    30,
    180,
    600,
    1200,
    1800,
    1800,
    1800,
    3600,
    10800,
    10800,
    10800,
    21600,
    21600,
)


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    data_dir: Path | None = None  # None: $JUHE_DATA_DIR (default .juhe)
    notify_scale: float = 1.0  # JUHE_SANDBOX_NOTIFY_SCALE
    notify_timeout_seconds: float = 5.0
    # A refund stays PROCESSING until approved/failed by the control API, or until this many seconds
    # have passed (then SUCCESS). None: manual only. JUHE_SANDBOX_WECHATPAY_REFUND_AUTO_SECONDS (<0 = None).
    refund_auto_success_seconds: float | None = 60.0
    # docs/protocols/wechatpay.md §7 is unsure between ORDER_NOT_EXIST and ORDERNOTEXIST [L]; configurable.
    order_not_exist_code: str = "ORDER_NOT_EXIST"
    fee_rate_bps: int = 60  # 0.60%, the standard WeChat merchant rate, used in bills
    # Real bills for day D appear after ~10:00 on D+1; the sandbox serves today's bill too unless False
    # (then today answers 400 STATEMENT_CREATING).
    bill_same_day: bool = True
    clock_skew_seconds_max: int = 300
    # 商家转账: a bill waits this long for the user to confirm in WeChat, then ends CANCELLED [L on the
    # exact end state]. JUHE_SANDBOX_WECHATPAY_TRANSFER_CONFIRM_SECONDS.
    transfer_confirm_seconds: float = 86400.0
    seed: int = 0

    @classmethod
    def from_env(cls) -> SandboxSettings:
        auto = env_float("JUHE_SANDBOX_WECHATPAY_REFUND_AUTO_SECONDS", 60.0)
        data_dir = os.environ.get("JUHE_DATA_DIR")
        return cls(
            data_dir=Path(data_dir) if data_dir else None,
            notify_scale=env_float("JUHE_SANDBOX_NOTIFY_SCALE", 1.0),
            refund_auto_success_seconds=None if auto < 0 else auto,
            order_not_exist_code=os.environ.get("JUHE_SANDBOX_WECHATPAY_ORDER_NOT_EXIST_CODE", "ORDER_NOT_EXIST"),
            fee_rate_bps=env_int("JUHE_SANDBOX_WECHATPAY_FEE_RATE_BPS", 60),
            bill_same_day=os.environ.get("JUHE_SANDBOX_WECHATPAY_BILL_SAME_DAY", "1") not in ("0", "false"),
            seed=env_int("JUHE_SANDBOX_SEED", 0),
            transfer_confirm_seconds=env_float("JUHE_SANDBOX_WECHATPAY_TRANSFER_CONFIRM_SECONDS", 86400.0),
        )
