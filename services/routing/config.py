"""Settings of the routing service: environment variables JUHE_ROUTING_*."""

from __future__ import annotations

from libs.common.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    model_config = service_settings_config("routing")

    service_name: str = "routing"
    port: int = 8003
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_routing"
