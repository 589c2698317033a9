"""Alipay sandbox settings, read once from the environment at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sandboxes.common.paths import env_float, env_int

# Alipay retries a notification until it reads the literal `success`: 8 attempts within ~25 h,
# after about 4m, 10m, 10m, 1h, 2h, 6h, 15h (docs/protocols/alipay.md §6 [M]). Multiplied by notify_scale.
NOTIFY_SCHEDULE_SECONDS: tuple[float, ...] = (240, 600, 600, 3600, 7200, 21600, 54000)


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    data_dir: Path | None = None  # None: $JUHE_DATA_DIR (default .juhe)
    notify_scale: float = 1.0  # JUHE_SANDBOX_NOTIFY_SCALE
    notify_timeout_seconds: float = 5.0
    fee_rate_bps: int = 60  # 0.60%, the standard Alipay merchant rate, shown in bills
    # Alipay answers isv.invalid-timestamp for a request timestamp far from its clock; the exact
    # window is undocumented [L], so it is a setting.
    timestamp_skew_seconds_max: int = 900
    bill_url_ttl_seconds: int = 30  # docs/protocols/alipay.md §8: the download URL lives ~30 s
    # Real bills for day D exist from ~09:00 on D+1; the sandbox serves today's bill too unless False.
    bill_same_day: bool = True

    @classmethod
    def from_env(cls) -> SandboxSettings:
        data_dir = os.environ.get("JUHE_DATA_DIR")
        return cls(
            data_dir=Path(data_dir) if data_dir else None,
            notify_scale=env_float("JUHE_SANDBOX_NOTIFY_SCALE", 1.0),
            notify_timeout_seconds=env_float("JUHE_SANDBOX_ALIPAY_NOTIFY_TIMEOUT_SECONDS", 5.0),
            fee_rate_bps=env_int("JUHE_SANDBOX_ALIPAY_FEE_RATE_BPS", 60),
            timestamp_skew_seconds_max=env_int("JUHE_SANDBOX_ALIPAY_TIMESTAMP_SKEW_SECONDS", 900),
            bill_url_ttl_seconds=env_int("JUHE_SANDBOX_ALIPAY_BILL_URL_TTL_SECONDS", 30),
            bill_same_day=os.environ.get("JUHE_SANDBOX_ALIPAY_BILL_SAME_DAY", "1") not in ("0", "false"),
        )
