"""`python -m services.cashier.reseal`: re-seal the cashier's stored signing secrets with the current key of its
key ring (JUHE_CASHIER_SECRETS_*), so a retired key can leave the ring (docs/operations.md §Sealing keys). Run it
with the same settings as the cashier, after every replica runs with the new key; safe to run again."""

from __future__ import annotations

import asyncio
import json

from libs.common.resealing import SealedColumn, reseal_database
from libs.common.sealing import Sealer
from services.cashier.config import Settings

# Every sealed column of the cashier and the id its values are bound to (flows/merchants.py, webhook_endpoints.py).
SEALED_COLUMNS = (
    SealedColumn("merchants", "webhook_secret_sealed", row_id="merchant_id"),
    SealedColumn("webhook_endpoints", "secret_sealed", row_id="id"),
    SealedColumn("webhook_endpoints", "previous_secret_sealed", row_id="id"),
)


async def main_async(settings: Settings) -> dict[str, int]:
    sealer = Sealer.from_settings(
        settings.secrets_encryption_key,
        key_id=settings.secrets_encryption_key_id,
        retired=settings.secrets_retired_keys,
    )
    return await reseal_database(settings.database_url, sealer, SEALED_COLUMNS)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main_async(Settings()))))
