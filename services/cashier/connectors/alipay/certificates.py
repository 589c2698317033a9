"""Alipay certificate mode (公钥证书模式, docs/protocols/alipay.md §7), merchant side.

In certificate mode every request names the merchant's app certificate (`app_cert_sn`) and Alipay's
root certificate(s) (`alipay_root_cert_sn`, the SNs of the RSA roots in the root file joined by `_`),
and every reply names the Alipay certificate whose key signed it (`alipay_cert_sn`). Signatures are
the same RSA2 as in public-key mode; the Alipay public key is the one inside Alipay's certificate.

SN = hex MD5 of the issuer DN written `CN=…,OU=…,O=…,C=…` followed by the decimal serial number,
as the official Java SDK and python-alipay-sdk compute it. Written here independently of the
sandbox (which issues the certificates), so a mistake on one side cannot hide the same mistake on
the other.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

_ISSUER_PARTS = (
    ("CN", NameOID.COMMON_NAME),
    ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("O", NameOID.ORGANIZATION_NAME),
    ("C", NameOID.COUNTRY_NAME),
)
_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
# Alipay's root file also holds non-RSA roots (e.g. SM2); the SDKs list only RSA-signed ones.
_RSA_SIGNATURES = frozenset(
    {
        SignatureAlgorithmOID.RSA_WITH_SHA1,
        SignatureAlgorithmOID.RSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA384,
        SignatureAlgorithmOID.RSA_WITH_SHA512,
        SignatureAlgorithmOID.RSA_WITH_MD5,
    }
)


def _load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.strip().encode("ascii"))


def cert_sn(certificate: x509.Certificate) -> str:
    def part(oid: x509.ObjectIdentifier) -> str:
        found = certificate.issuer.get_attributes_for_oid(oid)
        return str(found[0].value) if found else "None"

    issuer = ",".join(f"{name}={part(oid)}" for name, oid in _ISSUER_PARTS)
    return hashlib.md5((issuer + str(certificate.serial_number)).encode("utf-8")).hexdigest()


def app_cert_sn(app_cert_pem: str) -> str:
    """`app_cert_sn` of the merchant's app certificate (appCertPublicKey_<app_id>.crt)."""
    return cert_sn(_load(app_cert_pem))


def root_cert_sn(root_cert_pem: str) -> str:
    """`alipay_root_cert_sn`: the SNs of the RSA-signed certificates in alipayRootCert.crt, `_`-joined."""
    sns = [
        cert_sn(c)
        for c in (_load(block) for block in _PEM_BLOCK.findall(root_cert_pem))
        if c.signature_algorithm_oid in _RSA_SIGNATURES
    ]
    if not sns:
        raise ValueError("alipay_root_cert_pem holds no RSA root certificate")
    return "_".join(sns)


def alipay_public_key_pem(alipay_cert_pem: str) -> tuple[str, str]:
    """(SubjectPublicKeyInfo PEM, SN) of Alipay's public-key certificate (alipayCertPublicKey_RSA2.crt)."""
    certificate = _load(alipay_cert_pem)
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("Alipay's certificate does not hold an RSA key")
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode("ascii"), cert_sn(certificate)
