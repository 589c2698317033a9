"""Identity sandbox settings, read once from the environment at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sandboxes.common.paths import env_float, env_int

# The provider's callback retry schedule (Juhe's model: at once, then 5 s, 15 s, 1 m, 5 m, 30 m), × notify_scale.
CALLBACK_SCHEDULE_SECONDS = (0, 5, 15, 60, 300, 1800)
SIGNATURE_MAX_AGE_SECONDS = 300
DEMO_SECRET = "demo-identity-secret"


@dataclass(frozen=True)
class IdentitySettings:
    secret: str = DEMO_SECRET  # JUHE_SANDBOX_IDENTITY_SECRET: shared with the ledger's wallet KYC and the gateway
    notify_scale: float = 1.0  # JUHE_SANDBOX_NOTIFY_SCALE
    data_dir: str | None = None  # None: $JUHE_DATA_DIR (default .juhe)
    max_age_seconds: int = SIGNATURE_MAX_AGE_SECONDS  # JUHE_SANDBOX_IDENTITY_MAX_AGE_SECONDS

    @classmethod
    def from_env(cls) -> IdentitySettings:
        return cls(
            secret=os.environ.get("JUHE_SANDBOX_IDENTITY_SECRET", DEMO_SECRET),
            notify_scale=env_float("JUHE_SANDBOX_NOTIFY_SCALE", 1.0),
            data_dir=os.environ.get("JUHE_DATA_DIR"),
            max_age_seconds=env_int("JUHE_SANDBOX_IDENTITY_MAX_AGE_SECONDS", SIGNATURE_MAX_AGE_SECONDS),
        )
