"""SM2/SM3/SM4 for the bank side, on `gmssl` (the sandbox imports nothing from services/, so the
connector's wrapper is not reused; the same library defects are avoided the same way: the public key
is set after construction (its `lstrip("04")` bug), nonces come from `secrets`, r and s are range-checked).
"""

from __future__ import annotations

import base64
import secrets

from gmssl import func, sm2, sm3, sm4

N = int(sm2.default_ecc_table["n"], 16)


def sm3_hex(data: bytes) -> str:
    return str(sm3.sm3_hash(func.bytes_to_list(data)))


def _crypt(private_hex: str, public_hex: str) -> sm2.CryptSM2:
    crypt = sm2.CryptSM2(private_key=private_hex, public_key="00" * 64)
    crypt.public_key = public_hex[2:] if len(public_hex) == 130 else public_hex
    return crypt


def keypair() -> tuple[str, str]:
    d = secrets.randbelow(N - 2) + 1
    return f"{d:064x}", str(_crypt(f"{d:064x}", "00" * 64)._kg(d, sm2.default_ecc_table["g"]))


def sign(private_hex: str, public_hex: str, data: bytes) -> str:
    while True:
        signature = _crypt(private_hex, public_hex).sign_with_sm3(data, f"{secrets.randbelow(N - 1) + 1:064x}")
        if signature:
            return str(signature)


def verify(public_hex: str, signature: str, data: bytes) -> bool:
    if len(signature) != 128:
        return False
    try:
        r, s = int(signature[:64], 16), int(signature[64:], 16)
        return 1 <= r < N and 1 <= s < N and bool(_crypt("00", public_hex).verify_with_sm3(signature, data))
    except ValueError:
        return False


def sm4_encrypt(key_hex: str, text: str) -> str:
    iv = secrets.token_bytes(16)
    cipher = sm4.CryptSM4()
    cipher.set_key(bytes.fromhex(key_hex), sm4.SM4_ENCRYPT)
    return base64.b64encode(iv + cipher.crypt_cbc(iv, text.encode())).decode()
