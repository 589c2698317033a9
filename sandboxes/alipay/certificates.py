"""Alipay certificate mode (公钥证书模式, docs/protocols/alipay.md §7), as the sandbox plays it.

A merchant in certificate mode holds three certificates: its app certificate (its own public key,
issued by Alipay), Alipay's public-key certificate and Alipay's root certificate. Every request then
carries `app_cert_sn` (the app certificate's SN) and `alipay_root_cert_sn` (the root's SN; several
joined by `_`), and every reply carries `alipay_cert_sn`, naming the certificate whose key signed it.

SN = hex MD5 of the issuer DN written `CN=…,OU=…,O=…,C=…` followed by the serial number in decimal,
which is what python-alipay-sdk (`DCAliPay.get_cert_sn`) and the official Java SDK compute; every
certificate here has exactly those four issuer attributes, so the SDKs agree on it. Signatures are
the same RSA2 as in public-key mode: Alipay's certificate carries the sandbox's Alipay key pair.
The CA is kept under the sandbox's data dir so a restarted sandbox issues from the same root.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandboxes.common.keys import KeyPair, load_or_create_rsa_key

ROOT_DN = (
    ("CN", "Ant Financial Certification Authority R1 (sandbox)"),
    ("OU", "Certification Authority"),
    ("O", "Ant Financial"),
    ("C", "CN"),
)
VALIDITY_DAYS = 10 * 365
_OIDS = {
    "CN": NameOID.COMMON_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "C": NameOID.COUNTRY_NAME,
}


def _name(parts: tuple[tuple[str, str], ...]) -> x509.Name:
    # x509 order is C, O, OU, CN (most significant first); the SN string is written CN first.
    return x509.Name([x509.NameAttribute(_OIDS[k], v) for k, v in reversed(parts)])


def cert_sn(certificate: x509.Certificate) -> str:
    """hex MD5("CN=…,OU=…,O=…,C=…" + decimal serial), as the SDKs compute `app_cert_sn`."""
    issuer = certificate.issuer

    def value(key: str) -> str:
        found = issuer.get_attributes_for_oid(_OIDS[key])
        return str(found[0].value) if found else "None"

    text = ",".join(f"{key}={value(key)}" for key in ("CN", "OU", "O", "C")) + str(certificate.serial_number)
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True, slots=True)
class IssuedSet:
    """What a merchant downloads when it switches an app to certificate mode."""

    app_cert_pem: str
    app_cert_sn: str
    alipay_cert_pem: str
    alipay_cert_sn: str
    alipay_root_cert_pem: str
    alipay_root_cert_sn: str


class CertificateAuthority:
    """The sandbox's root CA, and Alipay's public-key certificate issued from it."""

    def __init__(self, data_dir: Path, alipay_key: KeyPair) -> None:
        self._root_key = load_or_create_rsa_key(data_dir, "alipay_root_ca")
        root_path, alipay_path = data_dir / "alipay_root_cert.pem", data_dir / "alipay_public_cert.pem"
        if not root_path.exists():
            root_path.write_text(pem(self._issue(_name(ROOT_DN), self._root_key.public_key, ca=True)), encoding="ascii")
        self.root = x509.load_pem_x509_certificate(root_path.read_bytes())
        if not alipay_path.exists():
            subject = _name(
                (
                    ("CN", "支付宝(中国)网络技术有限公司 (sandbox)"),
                    ("OU", "Alipay"),
                    ("O", "支付宝(中国)网络技术有限公司"),
                    ("C", "CN"),
                )
            )
            alipay_path.write_text(pem(self._issue(subject, alipay_key.public_key)), encoding="ascii")
        self.alipay = x509.load_pem_x509_certificate(alipay_path.read_bytes())
        self.root_sn = cert_sn(self.root)
        self.alipay_sn = cert_sn(self.alipay)

    def _issue(self, subject: x509.Name, public_key: rsa.RSAPublicKey, *, ca: bool = False) -> x509.Certificate:
        now = datetime.now(UTC).replace(microsecond=0)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(_name(ROOT_DN))
            .public_key(public_key)
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1 or 1)
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=VALIDITY_DAYS))
        )
        if ca:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        return builder.sign(self._root_key.private_key, hashes.SHA256())

    def issue_app_certificate(self, app_id: str, app_public_key_pem: str) -> IssuedSet:
        key = serialization.load_pem_public_key(app_public_key_pem.encode("ascii"))
        assert isinstance(key, rsa.RSAPublicKey)
        subject = _name((("CN", app_id), ("OU", "Alipay Open Platform"), ("O", "Juhe sandbox merchant"), ("C", "CN")))
        app_cert = self._issue(subject, key)
        return IssuedSet(
            app_cert_pem=pem(app_cert),
            app_cert_sn=cert_sn(app_cert),
            alipay_cert_pem=pem(self.alipay),
            alipay_cert_sn=self.alipay_sn,
            alipay_root_cert_pem=pem(self.root),
            alipay_root_cert_sn=self.root_sn,
        )
