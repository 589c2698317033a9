"""SM2 / SM3 / SM4 through `gmssl` (pure Python), with the library's sharp edges filed off.

Why `gmssl` 3.2.2: it installs anywhere from PyPI with no C library (`gmssl-python` loads libgmssl
through ctypes and `gmssl-pyx` builds against it; neither is on this platform's images), and it is
the implementation most Chinese open-source payment SDKs use. Its known defects are handled here:
* `CryptSM2.__init__` does `public_key.lstrip("04")`, which also eats leading `0`/`4` digits of the
  X coordinate: the key is set on the object after construction instead;
* the signing nonce defaults to `random.choice` (not a CSPRNG): we pass one from `secrets`;
* `verify` does not check that r and s lie in [1, n-1]: checked here before verifying;
* CBC decryption strips PKCS#7 padding without checking it: decrypted block by block and checked here.
SM2 signatures are SM3withSM2 with the GB/T 35276 default user id `1234567812345678`, encoded as
128 hex characters r‖s. SM4 is CBC with PKCS#7 padding and a random IV sent in front of the
ciphertext; it hides fields, the SM2 signature over the whole message protects them.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from gmssl import func, sm2, sm3, sm4

_N = int(sm2.default_ecc_table["n"], 16)
_HEX = frozenset("0123456789abcdef")
_NO_PADDING = -1  # neither sm4.PKCS7 nor sm4.ZERO: crypt_ecb then leaves the blocks as they are


class GmError(ValueError):
    """A key, signature or ciphertext that is malformed."""


def sm3_hex(data: bytes) -> str:
    return str(sm3.sm3_hash(func.bytes_to_list(data)))


def _crypt(private_key_hex: str, public_key_hex: str) -> sm2.CryptSM2:
    public = public_key_hex.lower().removeprefix("04") if len(public_key_hex) == 130 else public_key_hex.lower()
    if len(public) != 128 or not set(public) <= _HEX:
        raise GmError("SM2 public key must be 128 hex digits (X‖Y, optionally prefixed 04)")
    crypt = sm2.CryptSM2(private_key=private_key_hex, public_key="00" * 64)
    crypt.public_key = public  # see the module docstring: never through __init__'s lstrip
    return crypt


def generate_keypair() -> tuple[str, str]:
    """(private key hex, public key hex X‖Y) from a CSPRNG."""
    d = secrets.randbelow(_N - 2) + 1
    crypt = sm2.CryptSM2(private_key=f"{d:064x}", public_key="00" * 64)
    public = crypt._kg(d, sm2.default_ecc_table["g"])  # the library's scalar multiplication d·G
    return f"{d:064x}", str(public)


def public_key_of(private_key_hex: str) -> str:
    d = int(private_key_hex, 16)
    if not 1 <= d < _N - 1:
        raise GmError("SM2 private key out of range")
    crypt = sm2.CryptSM2(private_key=private_key_hex, public_key="00" * 64)
    return str(crypt._kg(d, sm2.default_ecc_table["g"]))


def sm2_sign(private_key_hex: str, public_key_hex: str, data: bytes) -> str:
    crypt = _crypt(private_key_hex, public_key_hex)
    while True:
        signature = crypt.sign_with_sm3(data, f"{secrets.randbelow(_N - 1) + 1:064x}")
        if signature:  # None on the rare r = 0 / r + k = n: draw another nonce
            return str(signature)


def sm2_verify(public_key_hex: str, signature_hex: str, data: bytes) -> bool:
    text = signature_hex.strip().lower()
    if len(text) != 128 or not set(text) <= _HEX:
        return False
    r, s = int(text[:64], 16), int(text[64:], 16)
    if not (1 <= r < _N and 1 <= s < _N):
        return False
    try:
        return bool(_crypt("00", public_key_hex).verify_with_sm3(text, data))
    except (GmError, ValueError, TypeError):
        return False


def sm4_encrypt(key_hex: str, plaintext: str) -> str:
    """Base64(IV ‖ SM4-CBC-PKCS7(key, UTF-8 plaintext))."""
    key = _sm4_key(key_hex)
    iv = secrets.token_bytes(16)
    cipher = sm4.CryptSM4()
    cipher.set_key(key, sm4.SM4_ENCRYPT)
    return base64.b64encode(iv + cipher.crypt_cbc(iv, plaintext.encode("utf-8"))).decode("ascii")


def sm4_decrypt(key_hex: str, encoded: str) -> str:
    key = _sm4_key(key_hex)
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GmError("SM4 field is not Base64") from exc
    if len(raw) < 32 or len(raw) % 16:
        raise GmError("SM4 field has a bad length")
    cipher = sm4.CryptSM4(padding_mode=_NO_PADDING)
    cipher.set_key(key, sm4.SM4_DECRYPT)
    blocks = cipher.crypt_ecb(raw[16:])  # CBC by hand: gmssl's CBC unpads without checking the padding
    plain = bytes(b ^ c for b, c in zip(blocks, raw[:-16], strict=True))
    pad = plain[-1]
    if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad:
        raise GmError("SM4 field has bad padding (wrong key or altered ciphertext)")
    try:
        return plain[:-pad].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GmError("SM4 field does not decrypt to UTF-8 (wrong key?)") from exc


def _sm4_key(key_hex: str) -> bytes:
    try:
        key = bytes.fromhex(key_hex)
    except ValueError as exc:
        raise GmError("SM4 key must be hex") from exc
    if len(key) != 16:
        raise GmError("SM4 key must be 16 bytes (32 hex digits)")
    return key
