"""Bank sandbox settings, read once from the environment at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sandboxes.common.paths import env_float

# Callback retry schedule (the sandbox's own, bank-like: quick at first, then hourly), × notify_scale.
NOTIFY_SCHEDULE_SECONDS: tuple[float, ...] = (5, 30, 60, 300, 900, 1800, 3600, 3600, 7200, 14400)


@dataclass(frozen=True, slots=True)
class BankSettings:
    data_dir: Path | None = None  # None: $JUHE_DATA_DIR (default .juhe)
    notify_scale: float = 1.0  # JUHE_SANDBOX_NOTIFY_SCALE
    # How long a payout stays PROCESSING before the bank decides (JUHE_SANDBOX_BANK_PROCESS_SECONDS).
    process_seconds: float = 2.0
    clock_skew_seconds_max: int = 300

    @classmethod
    def from_env(cls) -> BankSettings:
        data_dir = os.environ.get("JUHE_DATA_DIR")
        return cls(
            data_dir=Path(data_dir) if data_dir else None,
            notify_scale=env_float("JUHE_SANDBOX_NOTIFY_SCALE", 1.0),
            process_seconds=env_float("JUHE_SANDBOX_BANK_PROCESS_SECONDS", 2.0),
        )
