"""UnionPay certificates: the merchant's PFX, `certId`, and the chain check of `signPubKeyCert`.

* The merchant signs with the key in its PFX (PKCS#12); `certId` is the **decimal** serial number of
  the certificate in that PFX (docs/protocols/unionpay.md §2).
* Version 5.1.0 answers carry the signer's certificate (`signPubKeyCert`, PEM). It is believed only
  when (1) it was issued by the configured middle certificate, which was issued by the configured
  root, all three within their validity at the time of the check; (2) it is not itself a CA; and
  (3) its subject CN names UnionPay. The official SDK reads the identity as the third `@`-separated
  part of the CN (`041@Z12@中国银联股份有限公司@00000001`) and requires `中国银联股份有限公司`;
  with its `ifValidateCNName=false` switch (here `validate_cn_name=False`) the test environment's
  `00040000:SIGN` is accepted as well, never anything else.
* The encryption certificate (`encryptPubKeyCert`, from the key update transaction) is checked the
  same way, without the CN rule's SIGN identity (the SDK checks only the chain for it).

The chain is checked with `verify_directly_issued_by` rather than a web-PKI policy builder: UnionPay
certificates carry no DNS names and the web-PKI profile would refuse them for the wrong reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

UNIONPAY_CN_NAME = "中国银联股份有限公司"
TEST_CN_NAME = "00040000:SIGN"


class CertificateError(ValueError):
    """A certificate that may not be used: unreadable, outside its validity, wrong chain or wrong CN."""


@dataclass(frozen=True, slots=True)
class SigningIdentity:
    """The merchant's signing key and the `certId` that names its certificate."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def cert_id(self) -> str:
        return str(self.certificate.serial_number)


def load_pfx(data: bytes, password: str) -> SigningIdentity:
    """Read a merchant PFX (acp_test_sign.pfx-style): an RSA key and its certificate."""
    try:
        key, cert, _extra = pkcs12.load_key_and_certificates(data, password.encode("utf-8") if password else None)
    except ValueError as exc:
        raise CertificateError(f"unreadable PFX (wrong password?): {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey) or cert is None:
        raise CertificateError("the PFX must hold an RSA private key and its certificate")
    return SigningIdentity(key, cert)


def load_pem(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.strip().encode("ascii"))
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate: {exc}") from exc


def cn_identity(certificate: x509.Certificate) -> str:
    """The identity part of the subject CN: the third `@` part when there are more than two."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else ""
    parts = cn.split("@")
    return parts[2] if len(parts) > 2 else cn


def _check_validity(certificate: x509.Certificate, now: datetime, what: str) -> None:
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise CertificateError(f"{what} certificate is outside its validity period")


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


class ChainVerifier:
    """Checks certificates the channel sends against the configured root and middle certificates."""

    def __init__(self, root_pem: str, middle_pem: str, *, validate_cn_name: bool = True) -> None:
        self._root = load_pem(root_pem)
        self._middle = load_pem(middle_pem)
        self._validate_cn_name = validate_cn_name
        try:
            self._middle.verify_directly_issued_by(self._root)
        except Exception as exc:  # cryptography raises InvalidSignature, ValueError or TypeError
            raise CertificateError("the configured middle certificate was not issued by the root") from exc
        if not _is_ca(self._root) or not _is_ca(self._middle):
            raise CertificateError("the configured root and middle certificates must be CA certificates")

    def _chain(self, certificate: x509.Certificate, now: datetime) -> None:
        for cert, what in ((self._root, "root"), (self._middle, "middle"), (certificate, "signing")):
            _check_validity(cert, now, what)
        try:
            certificate.verify_directly_issued_by(self._middle)
        except Exception as exc:  # cryptography raises InvalidSignature, ValueError or TypeError here
            raise CertificateError("certificate was not issued by the configured middle certificate") from exc
        if _is_ca(certificate):
            raise CertificateError("a CA certificate may not sign messages")

    def signing_key(self, pem: str, *, now: datetime | None = None) -> rsa.RSAPublicKey:
        """The public key of a `signPubKeyCert` that passes the chain and CN rules."""
        moment = now or datetime.now(UTC)
        certificate = load_pem(pem)
        self._chain(certificate, moment)
        identity = cn_identity(certificate)
        allowed = {UNIONPAY_CN_NAME} if self._validate_cn_name else {UNIONPAY_CN_NAME, TEST_CN_NAME}
        if identity not in allowed:
            raise CertificateError(f"signing certificate CN identity {identity!r} is not UnionPay's")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise CertificateError("signing certificate does not hold an RSA key")
        return key

    def encryption_certificate(self, pem: str, *, now: datetime | None = None) -> x509.Certificate:
        """An `encryptPubKeyCert` that passes the chain check (the SDK applies no CN rule to it)."""
        certificate = load_pem(pem)
        self._chain(certificate, now or datetime.now(UTC))
        if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
            raise CertificateError("encryption certificate does not hold an RSA key")
        return certificate
