"""Settings of the gateway service: environment variables JUHE_GATEWAY_*."""

from __future__ import annotations

from libs.common.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    model_config = service_settings_config("gateway")

    service_name: str = "gateway"
    port: int = 8000
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_gateway"
