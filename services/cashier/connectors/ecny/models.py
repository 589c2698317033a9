"""e-CNY connector configuration and the protocol's constants (Juhe's model, docs/protocols/ecny.md).

There is no public, standard merchant API for e-CNY: merchants call the API of the operating bank
(运营机构) they signed with. This is Juhe's own documented protocol for such an acquiring bank, signed
with SM2/SM3 and encrypting sensitive fields with SM4 as Chinese banks do; it is not any bank's spec.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

HEADER_MERCHANT = "Ecny-Merchant-Id"
HEADER_TIMESTAMP = "Ecny-Timestamp"
HEADER_NONCE = "Ecny-Nonce"
HEADER_SIGNATURE = "Ecny-Signature"
SUPPORTED_CURRENCY = "CNY"

ORDER_PENDING, ORDER_SUCCEEDED, ORDER_FAILED, ORDER_CLOSED = "PENDING", "SUCCEEDED", "FAILED", "CLOSED"
REFUND_PROCESSING, REFUND_SUCCEEDED, REFUND_FAILED = "PROCESSING", "SUCCEEDED", "FAILED"

# PBoC wallet tiers as shown by the e-CNY app (数字人民币 App, 钱包等级), in fen: (per payment, per day, balance).
# Level 1 (一类, opened in person at the bank) has no limit. [M: e-CNY app tier table, 2022–2024]
WALLET_LIMITS_FEN: dict[int, tuple[int | None, int | None, int | None]] = {
    1: (None, None, None),
    2: (50_000_00, 100_000_00, 500_000_00),
    3: (5_000_00, 10_000_00, 20_000_00),
    4: (2_000_00, 5_000_00, 10_000_00),
}


class EcnyConfig(BaseModel):
    """One merchant at the e-CNY acquiring bank: its SM2 key pair, the bank's SM2 public key, the SM4 key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    merchant_id: str = Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z]+$")
    merchant_private_key_hex: SecretStr
    merchant_public_key_hex: str = Field(pattern=r"^(04)?[0-9a-fA-F]{128}$")
    bank_public_key_hex: str = Field(pattern=r"^(04)?[0-9a-fA-F]{128}$")
    sm4_key_hex: SecretStr
    order_expire_seconds: int = Field(default=900, ge=60, le=86400)
    clock_skew_seconds_max: int = Field(default=300, ge=30, le=3600)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=15.0, gt=0)
