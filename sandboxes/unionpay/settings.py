"""UnionPay sandbox settings, read once from the environment at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sandboxes.common.paths import env_float, env_int

# UnionPay resends a back notification until it gets HTTP 200: up to 5 more times, after about
# 1, 2, 4, 5 and 5 minutes (docs/protocols/unionpay.md §6 [M]). Multiplied by notify_scale.
NOTIFY_SCHEDULE_SECONDS: tuple[float, ...] = (60, 120, 240, 300, 300)


@dataclass(frozen=True, slots=True)
class UnionPaySettings:
    data_dir: Path | None = None  # None: $JUHE_DATA_DIR (default .juhe)
    notify_scale: float = 1.0  # JUHE_SANDBOX_NOTIFY_SCALE
    notify_timeout_seconds: float = 10.0  # UnionPay waits 10 s for the merchant's answer
    fee_rate_bps: int = 60  # 0.60% merchant fee in the settlement file
    # The unknown-outcome card answers origRespCode 03 to this many queries, then succeeds.
    unknown_queries: int = 2
    production_cn: bool = False  # sign with the production CN identity instead of 00040000:SIGN

    @classmethod
    def from_env(cls) -> UnionPaySettings:
        data_dir = os.environ.get("JUHE_DATA_DIR")
        return cls(
            data_dir=Path(data_dir) if data_dir else None,
            notify_scale=env_float("JUHE_SANDBOX_NOTIFY_SCALE", 1.0),
            notify_timeout_seconds=env_float("JUHE_SANDBOX_UNIONPAY_NOTIFY_TIMEOUT_SECONDS", 10.0),
            fee_rate_bps=env_int("JUHE_SANDBOX_UNIONPAY_FEE_RATE_BPS", 60),
            unknown_queries=env_int("JUHE_SANDBOX_UNIONPAY_UNKNOWN_QUERIES", 2),
            production_cn=os.environ.get("JUHE_SANDBOX_UNIONPAY_PRODUCTION_CN", "0") in ("1", "true"),
        )
