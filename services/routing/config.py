"""Settings of the routing service: environment variables JUHE_ROUTING_*.

Platform-tunable routing knobs (scoring weights, breaker thresholds) are not here: they live in the
database (`/v1/routing-settings`) so every replica uses the same values and changes are audited.
"""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    model_config = service_settings_config("routing")

    service_name: str = "routing"
    port: int = 8003
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_routing"
    # How often the worker records open → half_open transitions (and publishes them) and prunes windows.
    health_sweep_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    health_prune_interval_seconds: float = Field(default=60.0, gt=0, le=3600)
    # The special-rate programme catalogue (JSON, the shape of services/routing/data/special_rate_programmes.json).
    # Empty = that shipped file, an EXAMPLE catalogue to be checked against the channels' current policies.
    special_rate_catalogue_path: str = ""
