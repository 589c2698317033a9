"""WeChat Pay v3 signing, verification, AES-GCM and callback parsing with fixed keys and known vectors.

FIXED_PRIVATE_KEY_PEM was generated once with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`;
KNOWN_SIGNATURE_B64 is `openssl dgst -sha256 -sign key.pem msg | base64` over KNOWN_REQUEST_MESSAGE, computed
outside Python (RSA PKCS#1 v1.5 signatures are deterministic, so the vector is stable).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.cashier.connectors.base import (
    ChannelError,
    InvalidSignature,
    NotificationKind,
    RefundStatus,
    TradeStatus,
)
from services.cashier.connectors.wechatpay import WechatPayConfig, signing
from services.cashier.connectors.wechatpay.mapping import trade_result
from services.cashier.connectors.wechatpay.notifications import parse_notification

FIXED_PRIVATE_KEY_PEM = """\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDRdvDHH5hZ7v6y
bbONbWzsj3KTKelypVC/EJLd3le+KVwSAbTto35+oYVyqB/J5dKgjnbLSu3IENX8
9OZ3UEG3ynweTmFcQTBpqW/f5P//+NZK+NmBtI2b2m4Z6gIi/cp/hENdZp7E/qQk
Dj0ub9NHVCWBSkKDQXs5OZA7hLP1Ah7vKXEwvI3cHEWCJnsagEF6GRAUkcNDX6Os
/nz4gIsf3GaTSX8PaDmsUEeEzRXjrAgCOG4mwj3dfINby2wyRDoKAOHvmMxe2oeN
kYuanOcZK8ZPgdLnBpii0uE+/50YsfALaKx1/4m9REyEtnT7cM96W9nE5D6pM1zq
Xpt0oMR3AgMBAAECggEADNAy0Gt9XVsCV5XgWvFrrVjlEF2K+0ljlByGb24PfgF3
sV5LXBIZRdPJnwbr0uTtKocseykdPJTTEkNE6d2N95k6WHxA9mzCcmQ8BL00b8sg
CLwKSiXqV7NX8tvev5c40O4dVNRXOAO/tLjuQy3yBbX/CVaqlO7ng8uiqBFpFL6t
HIGwB46uLYa+Z1FYXJTbzipr349IPQ66pxGjkf5yQGEm6ZewgdCqKxfjYhqx+mq3
Jx9MGbMILpU9Ut0dKY0j0XZ/Q8cjGVvZ39H5GdTClWBz4lNm8lz4MgSbf0kGSeKQ
c1mzMQRc6huiq1YvtUwcGkRjnizeiWhSBdO7ZiUC+QKBgQDxmT1sFKL9yi8boqKQ
aYIBwgqj4xOzHV2KH4zJ4InAUPMqP4lq63BQVJ1fLGENz7ZbQYHF7XSIaRZ+06bF
o5+tobW9EI45hQ7/dg6wqpsseCRJ7h1BUEDUwagnpGNmok7FjcsmRPRd7IEZJC9T
xIVPbfqaLkNKEiOz5DgY+wdMYwKBgQDd81czU3tX/bBgd2G10rH60QJ6oEXyPfTW
Ebxe4/vikuyZ9PL3PsbvS/IYTU5VReo1SbhuTm55hKeq/6d9lTNfGELsiEx7MTew
eFO7+s6ubHkiKmTvN6HHQ8YN9wp0umdb68ID8VfuSrFmJQXhteC/LZ4cXhW0A3+S
qjaF7l3R3QKBgQDJ2P+KJwuuAZet/QjYom2tzlJZbkRtJyGZXpafq2srM/aU25SR
sbaaRrdcZpWHlnyCbY5gsOzlcvcKawYwpW2pASv3k7dfsx0+rYHEdCVE1/NpmPj0
MnqXxlwZEqzBeOVbBAYwKPgI6KlLOgIYeF3waLAw1Gn/nnwZtZhwtnn4hQKBgG9G
ZeyUqR03Uis7DyDSbmraSQzjt824ZDzDDZbhZFJ26OpTFVECB0jH4atvbptv/vkS
acXbyqVf7ZPcssNSfzvo9PyTZQzKYyo1WX3AQ8jNF3oamRoZ4SD/CJfNyE83eURr
kYzafgQ5LHGSlD1SK0iN/Vwpi2YB7v7AGa/SDvV9AoGBALxmMn3LRCCa0/H2/XnD
XMiHhshC7ynU4a+YeElm3gHaZ1QVDeHdnNHchO9IjoZVCDIN/NOm0LYNJlsTenUD
xx2OI0x6HeVutssZmmoRKpW6ZYJ6rRJUOOqUlYC/PY73xzXZMF+lervFFo46V+iK
9OgW8GKt5/2UEW/OFKrgYBd0
-----END PRIVATE KEY-----
"""

KNOWN_REQUEST_MESSAGE = (
    b"POST\n/v3/pay/transactions/native\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n"
    b'{"appid":"wxd678efh567hg6787","mchid":"1230000109"}\n'
)
KNOWN_SIGNATURE_B64 = (
    "h6ZPy3Ngr0BrCdf+97hJqsG0O+TpTbyNuMCMIhiQoLGaZbB0z0RNuinVvQvV4iVEk5HKfGZp3qFqclYAtuQDnT/lIabvTMIq"
    "JIaVaXrnHZnbnNB+rCK+smHnr+famukUXqO7y8SPF89BgcNeX9a3irsBcPajjHohy9bj+9ZgN2Z94nIH3PRydKf6pdSrp494"
    "Uhb0jpQt517fUzAnvyQMr977sdDc5VthZ+rlZvs8c6RFAbMrFxuSWOrRhTHbvETFDhK0Zw9gMr9/BW59NEP/6R9+t2ze9hVY"
    "N2oDonijnvqL8JXuTH0ULO2fchrwQhuR/0zOrct3w65zM5V9h7qsbw=="
)

APIV3_KEY = "0123456789abcdefABCDEF0123456789"
GCM_NONCE = "abcdefghijkl"
GCM_ASSOCIATED_DATA = "transaction"
GCM_PLAINTEXT = b'{"out_trade_no":"1217752501201407033233368018","trade_state":"SUCCESS"}'
GCM_CIPHERTEXT_B64 = (
    "SfD4HVovX+ky6+1o05V/qibzM1lMBg2i7+rTycocyvqv8vf2f0JgZm6qd3SXKb5QhHC+ZAVxxbZd+NIOcut0P0TNVPp+2Atx"
    "PgTL19GWtdUZKnTAVEEP"
)


def _key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(FIXED_PRIVATE_KEY_PEM.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _public_pem() -> str:
    return (
        _key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _independent_signature(message: bytes) -> str:
    """Computed here with `cryptography` directly, not through the connector's code."""
    return base64.b64encode(_key().sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


# ------------------------------------------------------------------------------------ request signing
def test_request_message_layout() -> None:
    message = signing.request_message("GET", "/v3/certificates?algorithm_type=RSA", 1554208460, "NONCE", b"")
    assert message == b"GET\n/v3/certificates?algorithm_type=RSA\n1554208460\nNONCE\n\n"


def test_signature_matches_the_openssl_vector() -> None:
    assert signing.sign_sha256_rsa(_key(), KNOWN_REQUEST_MESSAGE) == KNOWN_SIGNATURE_B64
    assert _independent_signature(KNOWN_REQUEST_MESSAGE) == KNOWN_SIGNATURE_B64


def test_authorization_header_is_exact() -> None:
    body = b'{"appid":"wxd678efh567hg6787","mchid":"1230000109"}'
    header = signing.build_authorization(
        mchid="1230000109",
        serial_no="1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",
        private_key=_key(),
        method="POST",
        canonical_url="/v3/pay/transactions/native",
        body=body,
        timestamp=1554208460,
        nonce="593BEC0C930BF1AFEB40B4A08C8FB242",
    )
    assert header == (
        'WECHATPAY2-SHA256-RSA2048 mchid="1230000109",nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",'
        'timestamp="1554208460",serial_no="1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",'
        f'signature="{KNOWN_SIGNATURE_B64}"'
    )


def test_nonce_is_32_alphanumerics() -> None:
    nonce = signing.nonce_str()
    assert len(nonce) == 32 and nonce.isalnum() and nonce != signing.nonce_str()


# ------------------------------------------------------------------------------------ response verification
def _signed_headers(
    body: bytes,
    *,
    timestamp: int,
    serial: str = "PUB_KEY_ID_0114232134912410000000000000",
    nonce: str = "fdasflkja484w",
) -> dict[str, str]:
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    return {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": _independent_signature(message),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


def _verify(headers: dict[str, str], body: bytes, now_unix: float) -> None:
    signing.verify_wechatpay_signature(
        headers,
        body,
        public_key=signing.load_public_key(_public_pem()),
        public_key_id="PUB_KEY_ID_0114232134912410000000000000",
        clock_skew_seconds_max=300,
        now_unix=now_unix,
    )


def test_response_signature_verifies_with_case_insensitive_headers() -> None:
    body = b'{"code_url":"weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}'
    headers = {k.lower(): v for k, v in _signed_headers(body, timestamp=1_700_000_000).items()}
    _verify(headers, body, now_unix=1_700_000_299)
    _verify(_signed_headers(b"", timestamp=1_700_000_000), b"", now_unix=1_700_000_000)  # 204: empty body


@pytest.mark.parametrize(
    ("change", "now_offset"),
    [
        ({}, 300),  # skew of exactly 5 minutes is rejected
        ({}, -300),
        ({"Wechatpay-Serial": "PUB_KEY_ID_0000000000000000000000000001"}, 0),
        ({"Wechatpay-Signature": "not base64!"}, 0),
        ({"Wechatpay-Nonce": "other"}, 0),
        ({"Wechatpay-Timestamp": "abc"}, 0),
        ({"Wechatpay-Signature-Type": "WECHATPAY2-SM2-WITH-SM3"}, 0),  # refused like the public SDKs
        ({"Wechatpay-Signature-Type": ""}, 0),
    ],
)
def test_response_signature_rejections(change: dict[str, str], now_offset: int) -> None:
    body = b'{"prepay_id":"wx201410272009395522657a690389285100"}'
    headers = {**_signed_headers(body, timestamp=1_700_000_000), **change}
    with pytest.raises(InvalidSignature):
        _verify(headers, body, now_unix=1_700_000_000 + now_offset)


def test_missing_signature_headers_and_changed_body_are_rejected() -> None:
    body = b'{"a":1}'
    headers = _signed_headers(body, timestamp=1_700_000_000)
    with pytest.raises(InvalidSignature):
        _verify({k: v for k, v in headers.items() if k != "Wechatpay-Signature"}, body, now_unix=1_700_000_000)
    with pytest.raises(InvalidSignature):
        _verify(headers, b'{"a":2}', now_unix=1_700_000_000)


# ------------------------------------------------------------------------------------ AES-256-GCM
def test_aes_gcm_known_vector_and_round_trip() -> None:
    plaintext = signing.aes_gcm_decrypt(
        APIV3_KEY, nonce=GCM_NONCE, associated_data=GCM_ASSOCIATED_DATA, ciphertext_b64=GCM_CIPHERTEXT_B64
    )
    assert plaintext == GCM_PLAINTEXT
    sealed = signing.aes_gcm_encrypt(
        APIV3_KEY, nonce=GCM_NONCE, associated_data=GCM_ASSOCIATED_DATA, plaintext=GCM_PLAINTEXT
    )
    assert sealed == GCM_CIPHERTEXT_B64
    independent = AESGCM(APIV3_KEY.encode()).encrypt(GCM_NONCE.encode(), GCM_PLAINTEXT, b"transaction")
    assert base64.b64decode(sealed) == independent
    assert len(independent) == len(GCM_PLAINTEXT) + 16  # ciphertext followed by the 16-byte tag


@pytest.mark.parametrize(
    "change",
    [
        {"apiv3_key": "1123456789abcdefABCDEF0123456789"},
        {"associated_data": "refund"},
        {"nonce": "abcdefghijkm"},
        {"ciphertext_b64": "AAAA" + GCM_CIPHERTEXT_B64[4:]},
        {"ciphertext_b64": "%%%"},
    ],
)
def test_aes_gcm_rejects_wrong_key_aad_nonce_or_tampering(change: dict[str, str]) -> None:
    arguments = {
        "apiv3_key": APIV3_KEY,
        "nonce": GCM_NONCE,
        "associated_data": GCM_ASSOCIATED_DATA,
        "ciphertext_b64": GCM_CIPHERTEXT_B64,
        **change,
    }
    key = arguments.pop("apiv3_key")
    with pytest.raises(InvalidSignature):
        signing.aes_gcm_decrypt(key, **arguments)


# ------------------------------------------------------------------------------------ client-side pay params
def test_jsapi_pay_sign_matches_independent_signature() -> None:
    params = signing.jsapi_pay_params(
        appid="wx8888888888888888",
        prepay_id="wx201410272009395522657a690389285100",
        private_key=_key(),
        timestamp=1414561699,
        nonce="5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    )
    expected = _independent_signature(
        b"wx8888888888888888\n1414561699\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\n"
        b"prepay_id=wx201410272009395522657a690389285100\n"
    )
    assert params == {
        "appId": "wx8888888888888888",
        "timeStamp": "1414561699",
        "nonceStr": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        "package": "prepay_id=wx201410272009395522657a690389285100",
        "signType": "RSA",
        "paySign": expected,
    }


def test_app_pay_sign_matches_independent_signature() -> None:
    params = signing.app_pay_params(
        appid="wxd678efh567hg6787",
        partnerid="1900000109",
        prepay_id="WX1217752501201407",
        private_key=_key(),
        timestamp=1412000000,
        nonce="5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    )
    expected = _independent_signature(
        b"wxd678efh567hg6787\n1412000000\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nWX1217752501201407\n"
    )
    assert params["sign"] == expected and params["package"] == "Sign=WXPay" and params["partnerid"] == "1900000109"


# ------------------------------------------------------------------------------------ callbacks
def _callback(
    event_type: str,
    resource: dict[str, Any],
    *,
    associated_data: str,
    apiv3_key: str = APIV3_KEY,
    timestamp: int | None = None,
) -> tuple[dict[str, str], bytes]:
    plaintext = json.dumps(resource).encode()
    ciphertext = base64.b64encode(
        AESGCM(apiv3_key.encode()).encrypt(b"fdasfjihihih", plaintext, associated_data.encode())
    ).decode()
    body = json.dumps(
        {
            "id": "EV-2018022511223320873",
            "create_time": "2015-05-20T13:29:35+08:00",
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "支付成功",
            "resource": {
                "original_type": associated_data,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "associated_data": associated_data,
                "nonce": "fdasfjihihih",
            },
        },
        ensure_ascii=False,
    ).encode()
    headers = _signed_headers(body, timestamp=int(time.time()) if timestamp is None else timestamp)
    headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SHA256-RSA2048"
    return headers, body


def _parse(headers: dict[str, str], body: bytes) -> Any:
    return parse_notification(
        headers,
        body,
        public_key=signing.load_public_key(_public_pem()),
        public_key_id="PUB_KEY_ID_0114232134912410000000000000",
        apiv3_key=APIV3_KEY,
        clock_skew_seconds_max=300,
    )


def test_transaction_callback_is_verified_decrypted_and_mapped() -> None:
    headers, body = _callback(
        "TRANSACTION.SUCCESS",
        {
            "appid": "wxd678efh567hg6787",
            "mchid": "1230000109",
            "out_trade_no": "1217752501201407033233368018",
            "transaction_id": "1217752501201407033233368018",
            "trade_type": "NATIVE",
            "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功",
            "bank_type": "CMC",
            "success_time": "2018-06-08T10:34:56+08:00",
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"},
            "unknown_future_field": {"x": 1},
        },
        associated_data="transaction",
    )
    notification = _parse(headers, body)
    assert notification.kind == NotificationKind.PAYMENT
    payment = notification.payment
    assert (payment.status, payment.out_trade_no, payment.amount_minor) == (
        TradeStatus.SUCCEEDED,
        "1217752501201407033233368018",
        100,
    )
    assert payment.paid_at.isoformat() == "2018-06-08T10:34:56+08:00"
    assert notification.ack_status_code == 200


def test_refund_callback_is_mapped() -> None:
    headers, body = _callback(
        "REFUND.SUCCESS",
        {
            "mchid": "1900000100",
            "out_trade_no": "1217752501201407033233368018",
            "transaction_id": "42000",
            "out_refund_no": "1217752501201407033233368018",
            "refund_id": "50000000382019052709732678859",
            "refund_status": "SUCCESS",
            "success_time": "2018-06-08T10:34:56+08:00",
            "user_received_account": "招商银行信用卡0403",
            "amount": {"total": 999, "refund": 999, "payer_total": 999, "payer_refund": 999},
        },
        associated_data="refund",
    )
    refund = _parse(headers, body).refund
    assert (refund.status, refund.refund_minor, refund.channel_refund_no) == (
        RefundStatus.SUCCEEDED,
        999,
        "50000000382019052709732678859",
    )


def test_callback_with_wrong_apiv3_key_or_stale_timestamp_is_rejected() -> None:
    headers, body = _callback(
        "TRANSACTION.SUCCESS",
        {"out_trade_no": "X"},
        associated_data="transaction",
        apiv3_key="ffffffffffffffffffffffffffffffff",
    )
    with pytest.raises(InvalidSignature):
        _parse(headers, body)
    headers, body = _callback(
        "TRANSACTION.SUCCESS", {"out_trade_no": "X"}, associated_data="transaction", timestamp=int(time.time()) - 600
    )
    with pytest.raises(InvalidSignature):
        _parse(headers, body)


def test_unhandled_event_type_is_a_channel_error() -> None:
    headers, body = _callback("PROFITSHARING", {"out_order_no": "X"}, associated_data="profitsharing")
    with pytest.raises(ChannelError) as error:
        _parse(headers, body)
    assert error.value.code == "UNSUPPORTED_EVENT_TYPE"


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("SUCCESS", TradeStatus.SUCCEEDED),
        ("REFUND", TradeStatus.SUCCEEDED),
        ("NOTPAY", TradeStatus.PENDING),
        ("USERPAYING", TradeStatus.PENDING),
        ("PAYERROR", TradeStatus.FAILED),
        ("CLOSED", TradeStatus.CLOSED),
        ("REVOKED", TradeStatus.CLOSED),
        ("SOMETHING_NEW", TradeStatus.PENDING),
    ],
)
def test_trade_state_mapping(state: str, status: TradeStatus) -> None:
    assert trade_result({"out_trade_no": "X", "trade_state": state}).status == status


def test_config_requires_a_complete_mode() -> None:
    common: dict[str, Any] = {
        "merchant_private_key_pem": FIXED_PRIVATE_KEY_PEM,
        "merchant_cert_serial": "AB",
        "platform_public_key_pem": _public_pem(),
        "platform_public_key_id": "PUB_KEY_ID_01",
        "apiv3_key": APIV3_KEY,
    }
    direct = WechatPayConfig(**common, mchid="1230000109", appid="wxd678efh567hg6787")
    assert (direct.partner, direct.signing_mchid, direct.payer_appid) == (False, "1230000109", "wxd678efh567hg6787")
    partner = WechatPayConfig(**common, sp_mchid="1900000100", sp_appid="wx8888888888888888", sub_mchid="1900000109")
    assert (partner.partner, partner.signing_mchid, partner.payer_appid) == (True, "1900000100", "wx8888888888888888")
    assert "PRIVATE KEY" not in repr(direct) and APIV3_KEY not in repr(direct)
    with pytest.raises(ValueError):
        WechatPayConfig(**common, mchid="1230000109")
    with pytest.raises(ValueError):
        WechatPayConfig(**common, sp_mchid="1900000100", sp_appid="wx8888888888888888")
    with pytest.raises(ValueError):
        WechatPayConfig(**{**common, "apiv3_key": "short"}, mchid="1", appid="wx")
