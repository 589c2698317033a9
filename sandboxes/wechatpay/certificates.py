"""Platform certificates for WeChat Pay's platform-certificate mode (docs/protocols/wechatpay.md §3).

Merchants that predate public-key mode verify replies and callbacks with a *platform certificate*
that they download from `GET /v3/certificates`: each certificate comes AES-256-GCM encrypted under
the merchant's APIv3 key (associated data `certificate`), and `Wechatpay-Serial` on a reply names
the certificate (upper-case hex serial) that signed it. WeChat rotates certificates: a new one is
listed before it signs anything, the old one stays listed until it expires, and clients that meet an
unknown serial download the list again. The sandbox keeps every certificate it issued (key + PEM) in
its store so a restarted sandbox still signs with the certificate merchants already trust.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandboxes.common.keys import KeyPair, generate_rsa_key_pair
from sandboxes.common.store import DocumentStore

COLLECTION = "platform_certificates"
VALIDITY_DAYS = 5 * 365  # real platform certificates are valid for five years
BACKDATE = timedelta(days=1)  # clients with a slightly slow clock still accept a fresh certificate


@dataclass(frozen=True, slots=True)
class PlatformCertificate:
    serial_no: str  # upper-case hex, as `Wechatpay-Serial` carries it
    key: KeyPair
    pem: str
    effective_time: datetime
    expire_time: datetime


def _issue(now: datetime) -> PlatformCertificate:
    pair = generate_rsa_key_pair()
    serial = int.from_bytes(secrets.token_bytes(20), "big") >> 1 or 1  # positive, at most 159 bits
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Juhe sandbox (Tenpay.com stand-in)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (sandbox)"),
        ]
    )
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Juhe sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, "WeChat Pay platform (sandbox)"),
        ]
    )
    effective, expire = now - BACKDATE, now + timedelta(days=VALIDITY_DAYS)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(name)
        .public_key(pair.public_key)
        .serial_number(serial)
        .not_valid_before(effective)
        .not_valid_after(expire)
        .sign(pair.private_key, hashes.SHA256())
    )
    return PlatformCertificate(
        serial_no=f"{serial:X}",
        key=pair,
        pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        effective_time=effective,
        expire_time=expire,
    )


class PlatformCertificates:
    """The sandbox's issued platform certificates; the newest one signs."""

    def __init__(self, store: DocumentStore) -> None:
        self._store = store
        self._keys: dict[str, KeyPair] = {}  # parsed private keys by serial: parsing costs milliseconds
        if not self._store.list(COLLECTION):
            self.rotate()

    def rotate(self) -> PlatformCertificate:
        """Issue a new certificate that signs from now on; older ones stay listed until they expire."""
        issued = _issue(datetime.now(UTC).replace(microsecond=0))
        self._store.put(
            COLLECTION,
            issued.serial_no,
            {
                "serial_no": issued.serial_no,
                "private_key_pem": issued.key.private_pem,
                "pem": issued.pem,
                "effective_time": issued.effective_time.isoformat(),
                "expire_time": issued.expire_time.isoformat(),
                "issued_unix": datetime.now(UTC).timestamp(),
                "sequence": len(self._store.list(COLLECTION)),
            },
        )
        return issued

    def all(self) -> list[PlatformCertificate]:
        """Every unexpired certificate, oldest first."""
        now = datetime.now(UTC)
        found: list[PlatformCertificate] = []
        for doc in sorted(self._store.list(COLLECTION), key=lambda d: d["sequence"]):
            expire = datetime.fromisoformat(doc["expire_time"])
            if expire <= now:
                continue
            pair = self._keys.get(doc["serial_no"])
            if pair is None:
                key = serialization.load_pem_private_key(doc["private_key_pem"].encode("ascii"), password=None)
                assert isinstance(key, rsa.RSAPrivateKey)
                pair = self._keys[doc["serial_no"]] = KeyPair(key)
            found.append(
                PlatformCertificate(
                    serial_no=doc["serial_no"],
                    key=pair,
                    pem=doc["pem"],
                    effective_time=datetime.fromisoformat(doc["effective_time"]),
                    expire_time=expire,
                )
            )
        return found

    def current(self) -> PlatformCertificate:
        return self.all()[-1]
