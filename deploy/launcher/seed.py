"""Seed the demo platform idempotently: the same keys are printed on every run."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploy.launcher.main import Platform


async def seed(platform: Platform, db_urls: dict[str, str]) -> dict[str, str]:
    try:
        gateway_seed = importlib.import_module("gateway.seed")
    except ModuleNotFoundError:
        platform.say("gateway seed not available yet; skipping demo data")
        return {}
    result = await gateway_seed.seed_demo_async(db_urls["gateway"], platform.data_dir / "demo-keys.json")
    return {str(k): str(v) for k, v in dict(result).items() if k != "created"}
