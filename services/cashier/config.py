"""Settings of the cashier service: environment variables JUHE_CASHIER_*."""

from __future__ import annotations

from libs.common.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    model_config = service_settings_config("cashier")

    service_name: str = "cashier"
    port: int = 8001
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_cashier"
