"""e-CNY bank sandbox settings, read once from the environment at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sandboxes.common.paths import env_float, env_int

# The bank's own notification schedule (Juhe's model): at once, then after 15 s, 1 m, 5 m, 30 m, 1 h.
NOTIFY_SCHEDULE_SECONDS: tuple[float, ...] = (15, 60, 300, 1800, 3600)


@dataclass(frozen=True, slots=True)
class EcnySettings:
    data_dir: Path | None = None  # None: $JUHE_DATA_DIR (default .juhe)
    notify_scale: float = 1.0  # JUHE_SANDBOX_NOTIFY_SCALE
    # Merchant fee on e-CNY acceptance in basis points; operating banks largely waive it, hence 0.
    fee_rate_bps: int = 0
    clock_skew_seconds_max: int = 300

    @classmethod
    def from_env(cls) -> EcnySettings:
        data_dir = os.environ.get("JUHE_DATA_DIR")
        return cls(
            data_dir=Path(data_dir) if data_dir else None,
            notify_scale=env_float("JUHE_SANDBOX_NOTIFY_SCALE", 1.0),
            fee_rate_bps=env_int("JUHE_SANDBOX_ECNY_FEE_RATE_BPS", 0),
        )
