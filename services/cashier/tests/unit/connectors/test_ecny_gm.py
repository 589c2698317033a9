"""SM2/SM3/SM4 of the e-CNY connector against the `openssl` command line (OpenSSL 3 speaks SM2/SM3/SM4).

Signatures go both ways: openssl signs, the connector verifies; the connector signs, openssl
verifies; both with SM3 and the default distinguishing id 1234567812345678.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from services.cashier.connectors.ecny import gm, signing

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")
DIST_ID = "distid:1234567812345678"


def openssl(*args: str, cwd: Path, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], cwd=cwd, input=stdin, check=True, capture_output=True).stdout


@pytest.fixture(scope="module")
def sm2_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    d = tmp_path_factory.mktemp("sm2")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2", "-out", "k.pem", cwd=d)
    openssl("pkey", "-in", "k.pem", "-pubout", "-out", "pub.pem", cwd=d)
    text = openssl("pkey", "-in", "k.pem", "-text", "-noout", cwd=d).decode()
    priv = re.sub(r"[\s:]", "", text.split("priv:")[1].split("pub:")[0])
    pub = re.sub(r"[\s:]", "", text.split("pub:")[1].split("ASN1")[0])
    return d, priv[-64:].rjust(64, "0"), pub


def test_sm3_matches_openssl(tmp_path: Path) -> None:
    for data in (b"abc", b"", "数字人民币".encode() * 50):
        expected = openssl("dgst", "-sm3", "-r", cwd=tmp_path, stdin=data).split()[0].decode()
        assert gm.sm3_hex(data) == expected
    assert gm.sm3_hex(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"  # GB/T 32905


def test_sm4_cbc_matches_openssl(tmp_path: Path) -> None:
    key, plain = "0123456789abcdeffedcba9876543210", "0040000000000004 钱包"
    encrypted = base64.b64decode(gm.sm4_encrypt(key, plain))
    iv, body = encrypted[:16], encrypted[16:]
    decrypted = openssl("enc", "-d", "-sm4-cbc", "-K", key, "-iv", iv.hex(), cwd=tmp_path, stdin=body)
    assert decrypted.decode() == plain
    theirs = openssl("enc", "-sm4-cbc", "-K", key, "-iv", iv.hex(), cwd=tmp_path, stdin=plain.encode())
    assert gm.sm4_decrypt(key, base64.b64encode(iv + theirs).decode()) == plain
    with pytest.raises(gm.GmError):
        gm.sm4_decrypt("00" * 16, base64.b64encode(iv + theirs).decode())


def test_openssl_signature_verifies_and_ours_verifies_in_openssl(sm2_key: tuple[Path, str, str]) -> None:
    d, private_hex, public_hex = sm2_key
    assert gm.public_key_of(private_hex) == public_hex.removeprefix("04")
    message = b"POST\n/v1/orders\n1765000000\nnonce\nabc\n"
    (d / "m").write_bytes(message)
    openssl(
        "pkeyutl",
        "-sign",
        "-inkey",
        "k.pem",
        "-rawin",
        "-digest",
        "sm3",
        "-in",
        "m",
        "-out",
        "s.der",
        "-pkeyopt",
        DIST_ID,
        cwd=d,
    )
    r, s = decode_dss_signature((d / "s.der").read_bytes())
    assert gm.sm2_verify(public_hex, f"{r:064x}{s:064x}", message)
    assert not gm.sm2_verify(public_hex, f"{r:064x}{s:064x}", message + b"x")
    ours = gm.sm2_sign(private_hex, public_hex, message)
    (d / "ours.der").write_bytes(encode_dss_signature(int(ours[:64], 16), int(ours[64:], 16)))
    out = openssl(
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "pub.pem",
        "-rawin",
        "-digest",
        "sm3",
        "-in",
        "m",
        "-sigfile",
        "ours.der",
        "-pkeyopt",
        DIST_ID,
        cwd=d,
    )
    assert b"Verified Successfully" in out


def test_out_of_range_and_malformed_signatures_are_refused() -> None:
    _private_hex, public_hex = gm.generate_keypair()
    n = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
    for bad in ("00" * 64, f"{n:064x}{1:064x}", "zz" * 64, "ab"):
        assert not gm.sm2_verify(public_hex, bad, b"m")


def test_public_keys_starting_with_04_survive() -> None:
    """gmssl's own constructor would `lstrip("04")` such a key; the wrapper must not."""
    for _ in range(400):
        private_hex, public_hex = gm.generate_keypair()
        if public_hex.startswith(("0", "4")):
            break
    else:
        pytest.skip("no key with a leading 0/4 digit drawn")
    assert gm.sm2_verify(public_hex, gm.sm2_sign(private_hex, public_hex, b"m"), b"m")


def test_message_signature_window() -> None:
    private_hex, public_hex = gm.generate_keypair()
    headers = signing.sign_request(private_hex, public_hex, "GET", "/v1/orders/x", b"", now=1_000_000)
    content = signing.message_string(headers["Ecny-Timestamp"], headers["Ecny-Nonce"], b"")
    headers["Ecny-Signature"] = gm.sm2_sign(private_hex, public_hex, content)
    assert signing.verify_message(public_hex, headers, b"", skew_seconds_max=300, now=1_000_100)
    assert not signing.verify_message(public_hex, headers, b"", skew_seconds_max=300, now=1_000_400)  # stale
    assert not signing.verify_message(public_hex, headers, b"{}", skew_seconds_max=300, now=1_000_100)  # body changed
