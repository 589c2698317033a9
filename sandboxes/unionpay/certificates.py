"""The sandbox's own UnionPay PKI: root → middle → signing (and encryption) certificates.

Generated at first start into the data dir and reused after a restart, so a connector configured
with the exported root and middle keeps working. The signing certificate's CN follows UnionPay's
`041@Z12@<identity>@<n>` form with the test environment's identity `00040000:SIGN` by default (a
connector must run with `validate_cn_name=False`, the official SDK's switch), or 中国银联股份有限公司
with `JUHE_SANDBOX_UNIONPAY_PRODUCTION_CN=1`. Merchant signing certificates (PFX) are issued from the
same middle certificate on request (the real ones come from CFCA; for a sandbox one issuer is enough).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from sandboxes.common.keys import generate_rsa_key_pair, load_or_create_rsa_key

TEST_IDENTITY = "00040000:SIGN"
PRODUCTION_IDENTITY = "中国银联股份有限公司"
CA_DAYS = 3650
LEAF_DAYS = 730


@dataclass(frozen=True, slots=True)
class Issued:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> str:
        """PEM with CRLF line ends, as UnionPay sends `signPubKeyCert`: a browser re-posting the signed
        fields to frontUrl normalises line breaks to CRLF, so LF would break the signature there."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii").replace("\n", "\r\n")


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Juhe UnionPay Sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def issue(key: rsa.RSAPrivateKey, cn: str, *, issuer: Issued | None, ca: bool, days: int) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.certificate.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(issuer.key if issuer else key, hashes.SHA256())


def _load_or_issue(directory: Path, name: str, cn: str, *, issuer: Issued | None, ca: bool, days: int) -> Issued:
    key = load_or_create_rsa_key(directory, f"{name}-key").private_key
    path = directory / f"{name}.pem"
    if path.exists():
        return Issued(key, x509.load_pem_x509_certificate(path.read_bytes()))
    certificate = issue(key, cn, issuer=issuer, ca=ca, days=days)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)
    return Issued(key, certificate)


@dataclass(frozen=True, slots=True)
class SandboxPki:
    root: Issued
    middle: Issued
    sign: Issued
    encrypt: Issued

    @classmethod
    def load_or_create(cls, directory: Path, *, production_cn: bool = False) -> SandboxPki:
        directory.mkdir(parents=True, exist_ok=True)
        identity = PRODUCTION_IDENTITY if production_cn else TEST_IDENTITY
        root = _load_or_issue(directory, "root", "Juhe Sandbox UnionPay Root CA", issuer=None, ca=True, days=CA_DAYS)
        middle = _load_or_issue(directory, "middle", "Juhe Sandbox UnionPay OCA1", issuer=root, ca=True, days=CA_DAYS)
        sign = _load_or_issue(
            directory,
            f"sign-{'prod' if production_cn else 'test'}",
            f"041@Z12@{identity}@00000001",
            issuer=middle,
            ca=False,
            days=LEAF_DAYS,
        )
        encrypt = _load_or_issue(
            directory, "encrypt", "041@Z12@中国银联股份有限公司@00000002", issuer=middle, ca=False, days=LEAF_DAYS
        )
        return cls(root, middle, sign, encrypt)

    def issue_merchant(self, mer_id: str, password: str) -> tuple[bytes, x509.Certificate]:
        """A merchant signing PFX (key + certificate from the middle CA), like acp_test_sign.pfx."""
        key = generate_rsa_key_pair().private_key
        certificate = issue(key, f"041@Z12@{mer_id}@00000001", issuer=self.middle, ca=False, days=LEAF_DAYS)
        pfx = pkcs12.serialize_key_and_certificates(
            mer_id.encode(), key, certificate, None, serialization.BestAvailableEncryption(password.encode())
        )
        return pfx, certificate
