"""Settings of the migration service: environment variables JUHE_MIGRATION_*."""

from __future__ import annotations

from pydantic import Field, SecretStr

from libs.common.settings import ServiceSettings, service_settings_config


class Settings(ServiceSettings):
    model_config = service_settings_config("migration")

    service_name: str = "migration"
    port: int = 8007
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe_migration"
    ledger_url: str = "http://127.0.0.1:8002"
    ledger_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    # Coupons go to marketing's internal import (signed with this service's identity); only runs with coupons.
    marketing_url: str = "http://127.0.0.1:8005"
    marketing_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    # Rows per batch: one ledger request and one commit of the run's records (and its checkpoint).
    batch_rows: int = Field(default=1000, ge=1, le=1000)
    # Reconciliation report: how many migrated holders are read back through the ledger's API.
    sample_size: int = Field(default=20, ge=0, le=1000)
    # The platform a CLI run belongs to (the API takes it from the caller's identity).
    platform: str = Field(default="default", min_length=1, max_length=64)
    # Where the API reads the files it is told to run (a shared volume); None: only the CLI runs files.
    import_dir: str | None = None
    # Merchant access after finalisation (`provision`): the gateway, and the platform's admin key (a secret:
    # from the environment only; the CLI refuses to provision without it).
    gateway_url: str = "http://127.0.0.1:8000"
    platform_key: SecretStr | None = None
