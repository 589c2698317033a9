"""`python -m gateway.reseal`: re-seal every secret the gateway keeps sealed (merchants' HMAC and webhook secrets,
staff TOTP secrets, onboarding requests, partner templates, stored idempotent responses) with the current key of
its credentials key ring (JUHE_GATEWAY_CREDENTIALS_*), so a retired key can leave the ring (docs/operations.md
§Sealing keys). Run it with the same settings as the gateway, after every replica runs with the new key; safe to
run again."""

from __future__ import annotations

import asyncio
import json

from gateway.config import Settings
from libs.common.resealing import SealedColumn, reseal_database
from libs.common.sealing import Sealer

# Every sealed column and the id its values are bound to, as the code sealing them computes it (flows/identities/,
# flows/staff.py, flows/onboarding.py, flows/onboarding_partner.py `_row_id`, domain/idempotency.py `sealed_row_id`).
SEALED_COLUMNS = (
    SealedColumn("merchants", "webhook_secret_sealed", row_id="id"),
    SealedColumn("api_keys", "secret_sealed", row_id="key_id"),
    SealedColumn("staff_members", "totp_secret_sealed", row_id="staff_id"),
    SealedColumn("merchant_onboardings", "request_sealed", row_id="onboarding_id"),
    SealedColumn(
        "partner_templates",
        "config_sealed",
        row_id="'partner-template/' || platform_id || '/' || channel || '/' || mode",
    ),
    SealedColumn(
        "idempotency_records",
        "response_body",
        row_id="'idempotency' || chr(10) || scope || chr(10) || key",
        where="response_sealed AND expires_at >= clock_timestamp()",
    ),
)


async def main_async(settings: Settings) -> dict[str, int]:
    sealer = Sealer.from_settings(
        settings.credentials_encryption_key,
        key_id=settings.credentials_encryption_key_id,
        retired=settings.credentials_retired_keys,
    )
    return await reseal_database(settings.database_url, sealer, SEALED_COLUMNS)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main_async(Settings()))))
