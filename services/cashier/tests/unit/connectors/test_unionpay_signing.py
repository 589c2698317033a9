"""UnionPay ACP 5.1.0 signing and certificate checks against vectors made with the `openssl` CLI.

Everything cryptographic here is produced by openssl (keys, root → middle → signing chain, the
merchant PFX, the double-hash signature), never by the code under test, so a mistake in the
connector cannot be mirrored by the fixture.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.cashier.connectors.base import InvalidSignature, NotificationKind, RefundStatus, TradeStatus
from services.cashier.connectors.unionpay import signing
from services.cashier.connectors.unionpay.certificates import (
    CertificateError,
    ChainVerifier,
    cn_identity,
    load_pem,
    load_pfx,
)
from services.cashier.connectors.unionpay.models import order_id_of, txn_time_of
from services.cashier.connectors.unionpay.notifications import decode_form, notification_from_fields, verify_message

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")

UNIONPAY_CN = "041@Z12@中国银联股份有限公司@00000001"
TEST_CN = "041@Z12@00040000:SIGN@00000001"
OTHER_CN = "041@Z12@某某支付有限公司@00000001"
MER_ID = "777290058110048"
PFX_PASSWORD = "000000"


def run(*args: str, stdin: bytes | None = None, cwd: Path) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, cwd=cwd, check=True, capture_output=True).stdout


@dataclass
class Pki:
    dir: Path

    def text(self, name: str) -> str:
        return (self.dir / name).read_text()

    def key(self, name: str) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key((self.dir / name).read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key


CA_EXTENSIONS = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
LEAF_EXTENSIONS = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"


def _issued(d: Path, name: str, cn: str, *, issuer: str, days: int, extensions: str) -> None:
    """A new key `name` and its certificate for `cn`, signed by `issuer`, with these extensions."""
    run("genrsa", "-out", f"{name}.key", "2048", cwd=d)
    run("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-utf8", "-subj", f"/CN={cn}", cwd=d)
    (d / f"{name}.ext").write_text(extensions)
    signing = ["-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key", "-CAcreateserial", "-extfile", f"{name}.ext"]
    run("x509", "-req", "-in", f"{name}.csr", *signing, "-out", f"{name}.pem", "-days", str(days), cwd=d)


def _ca(d: Path, name: str, cn: str, *, issuer: str | None, days: int) -> None:
    if issuer is not None:
        _issued(d, name, cn, issuer=issuer, days=days, extensions=CA_EXTENSIONS)
        return
    run("genrsa", "-out", f"{name}.key", "2048", cwd=d)
    self_signed = ["-x509", "-new", "-key", f"{name}.key", "-addext", "basicConstraints=critical,CA:TRUE"]
    run("req", *self_signed, "-out", f"{name}.pem", "-days", str(days), "-utf8", "-subj", f"/CN={cn}", cwd=d)


def _leaf(d: Path, name: str, cn: str, *, issuer: str) -> None:
    _issued(d, name, cn, issuer=issuer, days=365, extensions=LEAF_EXTENSIONS)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("unionpay-pki")
    _ca(d, "root", "CFCA TEST OCA1 ROOT", issuer=None, days=3650)
    _ca(d, "middle", "CFCA TEST OCA1", issuer="root", days=1800)
    _ca(d, "short_middle", "CFCA TEST OCA1 SHORT", issuer="root", days=2)  # expired 10 days from now
    _ca(d, "other_root", "SOMEBODY ELSE ROOT", issuer=None, days=3650)
    _ca(d, "other_middle", "SOMEBODY ELSE MIDDLE", issuer="other_root", days=1800)
    _leaf(d, "sign", UNIONPAY_CN, issuer="middle")
    _leaf(d, "test_sign", TEST_CN, issuer="middle")
    _leaf(d, "other_cn", OTHER_CN, issuer="middle")
    _leaf(d, "short_sign", UNIONPAY_CN, issuer="short_middle")
    _leaf(d, "forger", UNIONPAY_CN, issuer="other_middle")
    _leaf(d, "merchant", f"041@Z12@{MER_ID}@00000001", issuer="middle")
    run(
        "pkcs12",
        "-export",
        "-inkey",
        "merchant.key",
        "-in",
        "merchant.pem",
        "-out",
        "merchant.pfx",
        "-passout",
        f"pass:{PFX_PASSWORD}",
        cwd=d,
    )
    return Pki(d)


def openssl_signature(pki: Pki, key: str, content: str) -> str:
    """SHA-256 hex of the content (openssl dgst), then SHA256withRSA over that hex (openssl dgst -sign)."""
    hex_digest = run("dgst", "-sha256", "-r", stdin=content.encode(), cwd=pki.dir).split()[0]
    assert len(hex_digest) == 64 and hex_digest == hex_digest.lower()
    return base64.b64encode(run("dgst", "-sha256", "-sign", key, stdin=hex_digest, cwd=pki.dir)).decode()


def verifier(
    pki: Pki, *, root: str = "root.pem", middle: str = "middle.pem", validate_cn: bool = True
) -> ChainVerifier:
    return ChainVerifier(pki.text(root), pki.text(middle), validate_cn_name=validate_cn)


REQUEST = {
    "version": "5.1.0",
    "encoding": "UTF-8",
    "signMethod": "01",
    "txnType": "01",
    "txnSubType": "01",
    "bizType": "000201",
    "channelType": "07",
    "accessType": "0",
    "merId": MER_ID,
    "orderId": "20261206001",
    "txnTime": "20261206101500",
    "txnAmt": "8888",
    "currencyCode": "156",
    "backUrl": "http://m.example/notify",
    "frontUrl": " ",
    "reqReserved": "{a=1&b=2}",
    "payTimeout": "",
}


def test_request_signature_is_the_openssl_double_hash(pki: Pki) -> None:
    identity = load_pfx((pki.dir / "merchant.pfx").read_bytes(), PFX_PASSWORD)
    serial_hex = run("x509", "-in", "merchant.pem", "-noout", "-serial", cwd=pki.dir).decode().strip().split("=")[1]
    assert identity.cert_id == str(int(serial_hex, 16))  # certId is the DECIMAL serial
    signed = signing.sign({**REQUEST, "certId": identity.cert_id}, identity.private_key)
    assert "frontUrl" not in signed and "payTimeout" not in signed  # blank fields removed
    content = signing.sign_content({k: v for k, v in signed.items() if k != "signature"})
    assert content.startswith("accessType=0&backUrl=http://m.example/notify&bizType=000201&certId=")
    assert "&reqReserved={a=1&b=2}&" in content  # raw values, sorted keys
    assert signed["signature"] == openssl_signature(pki, "merchant.key", content)


def test_pfx_with_wrong_password_is_refused(pki: Pki) -> None:
    with pytest.raises(CertificateError):
        load_pfx((pki.dir / "merchant.pfx").read_bytes(), "wrong")


def response(pki: Pki, cert: str, key: str, **changes: str) -> dict[str, str]:
    fields = {
        "respCode": "00",
        "respMsg": "成功[0000000]",
        "merId": MER_ID,
        "orderId": "20261206001",
        "txnType": "01",
        "txnAmt": "8888",
        "queryId": "772612061015000000001",
        "traceTime": "1206101510",
        "txnTime": "20261206101500",
        "signPubKeyCert": pki.text(cert),
        "reserved": "",
        **changes,
    }
    fields["signature"] = openssl_signature(pki, key, signing.sign_content(fields))
    return fields


def test_openssl_signed_response_verifies_including_empty_fields(pki: Pki) -> None:
    fields = response(pki, "sign.pem", "sign.key")
    verify_message(fields, verifier(pki), MER_ID)
    assert signing.verify(fields, pki.key("sign.key").public_key())
    dropped = {k: v for k, v in fields.items() if k != "reserved"}  # empty fields are part of the string
    with pytest.raises(InvalidSignature):
        verify_message(dropped, verifier(pki), MER_ID)


@pytest.mark.parametrize("field,value", [("txnAmt", "1"), ("respCode", "01"), ("orderId", "20261206002")])
def test_tampered_field_is_refused(pki: Pki, field: str, value: str) -> None:
    fields = response(pki, "sign.pem", "sign.key")
    fields[field] = value
    with pytest.raises(InvalidSignature):
        verify_message(fields, verifier(pki), MER_ID)


def test_wrong_root_is_refused(pki: Pki) -> None:
    fields = response(pki, "forger.pem", "forger.key")  # a valid chain, but to another root
    with pytest.raises(InvalidSignature, match="middle"):
        verify_message(fields, verifier(pki), MER_ID)
    with pytest.raises(CertificateError):  # nor can another root be mixed with UnionPay's middle
        verifier(pki, root="other_root.pem")


def test_expired_middle_is_refused(pki: Pki) -> None:
    checker = verifier(pki, middle="short_middle.pem")
    cert = pki.text("short_sign.pem")
    checker.signing_key(cert)  # valid today
    with pytest.raises(CertificateError, match="middle certificate is outside"):
        checker.signing_key(cert, now=datetime.now(UTC) + timedelta(days=10))


def test_cn_rule_and_the_test_switch(pki: Pki) -> None:
    assert cn_identity(load_pem(pki.text("sign.pem"))) == "中国银联股份有限公司"
    with pytest.raises(CertificateError, match="CN"):
        verifier(pki).signing_key(pki.text("test_sign.pem"))  # production: the test CN is refused
    verifier(pki, validate_cn=False).signing_key(pki.text("test_sign.pem"))  # the switch accepts it
    for validate in (True, False):
        with pytest.raises(CertificateError, match="CN"):
            verifier(pki, validate_cn=validate).signing_key(pki.text("other_cn.pem"))


def test_ca_certificate_cannot_sign(pki: Pki) -> None:
    with pytest.raises(CertificateError):
        verifier(pki).signing_key(pki.text("middle.pem"))


def test_forged_notification_is_refused(pki: Pki) -> None:
    genuine = response(pki, "sign.pem", "sign.key", txnType="01")
    notification = notification_from_fields(decode_form(urlencode(genuine).encode()))
    verify_message(decode_form(urlencode(genuine).encode()), verifier(pki), MER_ID)
    assert notification.kind is NotificationKind.PAYMENT and notification.payment is not None
    assert notification.payment.status is TradeStatus.SUCCEEDED and notification.payment.amount_minor == 8888
    # Signed by a key that is not the certificate's: the certificate chains, the signature does not.
    forged = response(pki, "sign.pem", "forger.key", txnAmt="1")
    with pytest.raises(InvalidSignature, match="signature"):
        verify_message(decode_form(urlencode(forged).encode()), verifier(pki), MER_ID)
    # Genuinely signed, but for another merchant.
    with pytest.raises(InvalidSignature, match="merId"):
        verify_message(response(pki, "sign.pem", "sign.key", merId="777290058110099"), verifier(pki), MER_ID)
    with pytest.raises(InvalidSignature):
        verify_message({k: v for k, v in genuine.items() if k != "signPubKeyCert"}, verifier(pki), MER_ID)


def test_refund_notification_carries_our_numbers(pki: Pki) -> None:
    fields = response(
        pki,
        "sign.pem",
        "sign.key",
        txnType="04",
        txnAmt="100",
        reqReserved="ref_0193a1b2c3d4e5f6a7b8c9d0e1f2a3b4|0193a1b2c3d4e5f6a7b8c9d0e1f2a3b5",
    )
    notification = notification_from_fields(fields)
    assert notification.kind is NotificationKind.REFUND and notification.refund is not None
    assert notification.refund.status is RefundStatus.SUCCEEDED
    assert notification.refund.out_refund_no == "ref_0193a1b2c3d4e5f6a7b8c9d0e1f2a3b4"
    assert notification.refund.out_trade_no == "0193a1b2c3d4e5f6a7b8c9d0e1f2a3b5"


def test_kv_bodies_keep_braced_values_raw() -> None:
    body = "respCode=00&reserved={a=1&b=[x&y]}&signPubKeyCert=-----BEGIN CERTIFICATE-----\nAB+/==\n-----END&empty="
    fields = signing.parse_kv(body)
    assert fields["reserved"] == "{a=1&b=[x&y]}"
    assert fields["signPubKeyCert"].endswith("AB+/==\n-----END")
    assert fields["empty"] == ""
    for bad in ("a=1&a=2", "a=1&novalue", "a={1"):
        with pytest.raises(signing.ResponseFormatError):
            signing.parse_kv(bad)


def test_order_id_and_txn_time_from_uuid7() -> None:
    value = uuid.UUID(int=(1765000000123 << 80) | (0x7 << 76) | (0x2 << 62) | 5)
    assert txn_time_of(value.hex) == "20251206134640"  # 2025-12-06 05:46:40 UTC, Beijing +8
    assert txn_time_of(f"ref_{value.hex}") == txn_time_of(value.hex)
    assert order_id_of(f"ref_{value.hex}") == value.hex
    with pytest.raises(ValueError):
        order_id_of("has-dash-1234")
    with pytest.raises(ValueError):
        txn_time_of(uuid.uuid4().hex)
