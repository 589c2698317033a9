"""Settings of the marketing service: environment variables JUHE_MARKETING_*."""

from __future__ import annotations

from libs.common.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    model_config = service_settings_config("marketing")

    service_name: str = "marketing"
    port: int = 8005
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_marketing"
