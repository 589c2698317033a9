"""Settings of the ledger service: environment variables JUHE_LEDGER_*."""

from __future__ import annotations

from libs.common.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    model_config = service_settings_config("ledger")

    service_name: str = "ledger"
    port: int = 8002
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_ledger"
