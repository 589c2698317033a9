"""The UnionPay sandbox on its own: wire format, PKI persistence, refusals (sandbox-only imports)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from sandboxes.common.testing import SandboxProcess
from sandboxes.unionpay import crypto
from sandboxes.unionpay.certificates import SandboxPki

PORT_ENV = "JUHE_SANDBOX_UNIONPAY_PORT"


def test_pki_is_generated_once_and_chains(tmp_path: Path) -> None:
    first = SandboxPki.load_or_create(tmp_path)
    again = SandboxPki.load_or_create(tmp_path)
    assert first.root.pem == again.root.pem and first.sign.pem == again.sign.pem
    first.middle.certificate.verify_directly_issued_by(first.root.certificate)
    first.sign.certificate.verify_directly_issued_by(first.middle.certificate)
    cn = first.sign.certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert str(cn).split("@")[2] == "00040000:SIGN"


def test_answers_are_raw_kv_and_signed(tmp_path: Path) -> None:
    with SandboxProcess("sandboxes.unionpay", port_env=PORT_ENV, env={"JUHE_DATA_DIR": str(tmp_path)}) as sandbox:
        merchant = httpx.post(f"{sandbox.base_url}/control/merchants", json={"mer_id": "777290058110048"}).json()
        key, cert, _ = pkcs12.load_key_and_certificates(
            base64.b64decode(merchant["sign_pfx_base64"]), merchant["sign_pfx_password"].encode()
        )
        assert isinstance(key, rsa.RSAPrivateKey) and cert is not None
        assert merchant["cert_id"] == str(cert.serial_number)
        request = {
            "version": "5.1.0",
            "encoding": "UTF-8",
            "signMethod": "01",
            "certId": merchant["cert_id"],
            "txnType": "01",
            "txnSubType": "01",
            "bizType": "000201",
            "channelType": "08",
            "accessType": "0",
            "merId": "777290058110048",
            "orderId": "ORDER20261206A",
            "txnTime": "20261206101500",
            "txnAmt": "100",
            "currencyCode": "156",
            "reqReserved": "{a=1&b=2}",
        }
        body = crypto.sign(request, key, "merchant requests may carry extra fields; all are signed")
        answer = httpx.post(f"{sandbox.base_url}/gateway/api/appTransReq.do", data=body).text
        assert "signPubKeyCert=-----BEGIN CERTIFICATE-----\r\n" in answer  # raw, not URL-encoded
        assert "respCode=00" in answer and "&tn=" in answer and "&reqReserved={a=1&b=2}&" in answer
        forged = httpx.post(f"{sandbox.base_url}/gateway/api/appTransReq.do", data={**body, "txnAmt": "1"}).text
        assert "respCode=11" in forged and "signature" not in forged
        certs = httpx.get(f"{sandbox.base_url}/control/certificates").json()
    with SandboxProcess("sandboxes.unionpay", port_env=PORT_ENV, env={"JUHE_DATA_DIR": str(tmp_path)}) as sandbox:
        assert httpx.get(f"{sandbox.base_url}/control/certificates").json() == certs  # same chain after restart
