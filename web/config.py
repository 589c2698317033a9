"""Settings of the web process: environment variables JUHE_WEB_*.

The web process has no database: sessions are sealed cookies (AES-256-GCM under `session_key`), every
read and write goes to the gateway's public API, so any number of replicas serve the same users.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from libs.common.settings import ServiceSettings, service_settings_config

# 32 bytes, base64: seals session cookies. Prod refuses it.
DEMO_SESSION_KEY = "anVoZS1kZW1vLXdlYi1zZXNzaW9uLWtleS0zMmJ5dGU="
# Must equal the gateway's `web_client_token` (gateway/config.py DEMO_WEB_CLIENT_TOKEN): the first-party
# identity the gateway lets redeem sign-in links. Prod refuses it.
DEMO_GATEWAY_CLIENT_TOKEN = "juhe-demo-web-client-token-change-me"


class Settings(ServiceSettings):
    model_config = service_settings_config("web")

    service_name: str = "web"
    port: int = 8006
    gateway_url: str = "http://127.0.0.1:8000"
    gateway_client_token: SecretStr = SecretStr(DEMO_GATEWAY_CLIENT_TOKEN)
    gateway_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    session_key: SecretStr = SecretStr(DEMO_SESSION_KEY)
    # A session ends after this long without a request, and never outlives its gateway user token.
    session_idle_seconds: int = Field(default=900, ge=60, le=86400)
    # Secure cookies need HTTPS, which browsers also grant http://127.0.0.1 and localhost (dev, tests).
    cookie_secure: bool = True
    default_locale: str = "zh_CN"
    # The platform's withdrawal fee (the ledger's JUHE_LEDGER_WALLET_WITHDRAWAL_FEE_MINOR), shown and sent.
    withdrawal_fee_minor: int = Field(default=0, ge=0, le=100_000)
    history_page_size: int = Field(default=20, ge=1, le=100)

    @model_validator(mode="after")
    def _refuse_demo_secrets_for_pages(self) -> Self:
        if self.env == "prod" and self.session_key.get_secret_value() == DEMO_SESSION_KEY:
            raise ValueError("refusing to start in prod with the demo session_key")
        if self.env == "prod" and self.gateway_client_token.get_secret_value() == DEMO_GATEWAY_CLIENT_TOKEN:
            raise ValueError("refusing to start in prod with the demo gateway_client_token")
        return self
