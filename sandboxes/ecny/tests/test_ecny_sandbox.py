"""The e-CNY bank sandbox on its own (sandbox-only imports): tiers, refusals, a key that survives a restart."""

from __future__ import annotations

from pathlib import Path

import httpx

from sandboxes.common.testing import SandboxProcess
from sandboxes.ecny import crypto

PORT_ENV = "JUHE_SANDBOX_ECNY_PORT"


def test_tiers_refusals_and_restart(tmp_path: Path) -> None:
    env = {"JUHE_DATA_DIR": str(tmp_path)}
    with SandboxProcess("sandboxes.ecny", port_env=PORT_ENV, env=env) as sandbox:
        levels = httpx.get(f"{sandbox.base_url}/control/wallet-levels").json()
        assert levels["4"] == {"per_payment_minor": 200_000, "daily_minor": 500_000, "balance_minor": 1_000_000}
        assert levels["1"]["per_payment_minor"] is None
        merchant = httpx.post(f"{sandbox.base_url}/control/merchants", json={"merchant_id": "EC1"}).json()
        unsigned = httpx.get(f"{sandbox.base_url}/v1/orders/abcdef1", headers={"Ecny-Merchant-Id": "EC1"})
        assert unsigned.status_code == 401 and unsigned.json()["code"] == "SIGN_ERROR"
        stamp, nonce = unsigned.headers["Ecny-Timestamp"], unsigned.headers["Ecny-Nonce"]
        body = f"{stamp}\n{nonce}\n{crypto.sm3_hex(unsigned.content)}\n"
        assert crypto.verify(merchant["bank_public_key_hex"], unsigned.headers["Ecny-Signature"], body.encode())
        key = httpx.get(f"{sandbox.base_url}/control/bank-public-key").json()
    with SandboxProcess("sandboxes.ecny", port_env=PORT_ENV, env=env) as sandbox:
        assert httpx.get(f"{sandbox.base_url}/control/bank-public-key").json() == key
