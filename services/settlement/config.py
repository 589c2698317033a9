"""Settings of the settlement service: environment variables JUHE_SETTLEMENT_*."""

from __future__ import annotations

from libs.common.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    model_config = service_settings_config("settlement")

    service_name: str = "settlement"
    port: int = 8004
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_settlement"
