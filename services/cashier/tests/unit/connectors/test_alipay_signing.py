"""Alipay RSA2 signing, response-node extraction and notification verification with fixed keys.

The keys below are test-only 2048-bit RSA keys generated for this file; the expected signature was
produced independently with `openssl dgst -sha256 -sign` over the expected sign content, and every
signature the code makes is checked again with `cryptography` directly.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from services.cashier.connectors.alipay.client import AlipayConnector
from services.cashier.connectors.alipay.models import AlipayConfig
from services.cashier.connectors.alipay.signing import (
    ResponseFormatError,
    extract_node_text,
    notification_sign_content,
    request_sign_content,
    response_node_name,
    rsa2_sign,
    rsa2_verify,
)
from services.cashier.connectors.base import (
    InvalidSignature,
    NotificationKind,
    PrepayRequest,
    RefundStatus,
    TradeStatus,
)
from services.cashier.domain.payments import PaymentScene

APP_PRIVATE_KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDEpAyna1GLZnlf
tkHYbwz7yxcXpva2bFkw/9zxDXkOB8zggFKkmQajgfB9ieTZefF+mlsdvBPSLEVS
kC7r0p7qVEfRxeuvRvOTX8pRAMF/kopFsKVsDYqfnSs+fWBg46PZVXeEexCRWz4Q
MQUnOHa1pgfDxY7oMExreWaKagSHvWsQta8fu+5vtsOtm662ohrFSRySihg9JgXD
QiA2IF9tMYnEVDxY0sExB8VnSJBA7gGN2TwYbJmNGEVt7c13EOInmZC3G1XiYCLQ
CdJaQB9Ku1elYBxvceIY6mUgZbFeMlV2e0yT8dDn/8Y61ZXd7IRdk/1inetivnAa
cwaGaJhXAgMBAAECggEAYRorX38YyPAk7nUXRdPswufycs0RllqhnpcymNxQ03NZ
oeDsLnicdSCEy9FMr3HOpXh+lwvZc9dFsjQd33jl3YwZ3QZR0H+GZ1eNlft8Ec2g
tzI4NcfoFNKtWJHcBmxS7E8Okl6c+1JlruQuCcSRpjijK/MCEzlKe2X7E02wCADM
xbrAzZoULlNbePJO8hRRnIF4DrMmbQDhgIllaS7acwXPk3TqgCZK7RfEdEPt1kIN
XUQ7GbFBnJq77Yaqd/rr9pmBVOG9VSdS1uBlP1CeOtdp+r+4aguPIZkCPvt3e/Zw
N2Z2QSf0flPbjFv5TIkwDBXpnV2mC3iaPxugdMQ5hQKBgQDx94h+CoL9KcZ7bu9g
cJoOBSU2VFTdPoVXJtSqW/ELJtNTd47RM4dZ7LfQFYU4P+iIUe7x7/5o6xHg+E/M
caHNQNu2eiexFm03EumCkCyR3mgRdF7TSd9g0UAiUCaSVdR5O+s5ibL/IZD7VVnG
tgUi9eaK6m/4fkG/jbvekjpQ5QKBgQDQC5ADE8SSC3LpetpkfaOvatBtrvDzb6AK
kepcpCil2AYgC7xnrSxGgL8GE8k8d2i+eaGdMKBxOOu78T1zJrOxX2UkV/EBAUaL
rGTVnqArzyseVmxtPWH9OwXuiUbdolPB3V14ayx3VVnZzUUOYjAMcv5gc4q7AC8j
bz8NVxU8iwKBgCcUnNYGqptrGOSsyTrhVPB4wkbhHgfR5kVqPyT4zpjHf5BWmhmN
4gmTIykXoLmyEMObwCURZxzZAr08Pd8+Zyy4kgQJ/MksXx1rD44H7TruGg7fpcUo
hEyl317rZR9zf2rJU7eqVt/AMyN06Jggo/m+j6rWLJmNAt+Ga9aJ9aNFAoGACkKH
t58h8pHd+OW2H36Ss/Pwk3gtKdQ3cE4B4M+3sXYV1z6869/+bvuqcAJJylGZOMuG
zNm5D9xew8YB4cvm0LiDpGcx23rUn87AqkhIXeC5n6Vjc3+zdWmTwU/DzupSdx0T
nvyqFLiA1dzpquvssrB5GwiXruEzcevqkB3bTkECgYBirltSv6KlnkiMyF8VGlr4
hF2yQ3BLPi3qOrUzCyyQY8UDc5Y8RbCsB4RjheaazV/psYzmSvuntlCJecDv6ES9
aFmqTbDJUor/EbZNPcwYV+nTXGzQiDKs4SV1EqWXVVCqD6uzDr6rdRCxomfrFmxP
EVIHFpbY5qPXjEtnR0AhBg==
-----END PRIVATE KEY-----
"""
APP_PUBLIC_KEY_PEM = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAxKQMp2tRi2Z5X7ZB2G8M
+8sXF6b2tmxZMP/c8Q15DgfM4IBSpJkGo4HwfYnk2XnxfppbHbwT0ixFUpAu69Ke
6lRH0cXrr0bzk1/KUQDBf5KKRbClbA2Kn50rPn1gYOOj2VV3hHsQkVs+EDEFJzh2
taYHw8WO6DBMa3lmimoEh71rELWvH7vub7bDrZuutqIaxUkckooYPSYFw0IgNiBf
bTGJxFQ8WNLBMQfFZ0iQQO4Bjdk8GGyZjRhFbe3NdxDiJ5mQtxtV4mAi0AnSWkAf
SrtXpWAcb3HiGOplIGWxXjJVdntMk/HQ5//GOtWV3eyEXZP9Yp3rYr5wGnMGhmiY
VwIDAQAB
-----END PUBLIC KEY-----
"""
ALIPAY_PRIVATE_KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCTrkZtRB5Kxa1H
/Zem7jD5thWcFVnnz1D+nSW+nRiFKYo4dpogE9I7wP5xxslW/bHI1a4TzWHZkUrz
4a8VZUVxCkDuQVj9z/lzOAcjV+oeTl64YQ7mgRL0g8F+S8+Oz+OGAQIArJczLRK3
PwUNZmfKj/PIpA9fSScjvGTO2EgAVfAA/g20wJYlUbMtZIm3hZ+5eZLOzhNouRTt
WXVuLZlBxN0ztNjO1mMzeE0vqkq4rEOUhR7uLyDCEi7/zlv6Sd0K4u7hnKHDqHQi
jkHNgH6PdtXaTN6NtD+w4oARVdM4GEiI38VZsM+KIDs9CdxX3QBg/adYYU7D/zCd
S6D+KCbtAgMBAAECggEAG3l6N7zLB+0j0jdfHdrFeMeD2LBuM/6xWlUhHwe59pgm
U1/ZR6t4Ws6KZ99sOMdk6nC6fIuiryflMl8jxA69rwyRzOGSbVHiXimnxk8GStIY
tCO2cnLD9IKInnb7K94IPbd1SGvTi11Q1I+gYIBTQe+rEoJXK8p/whm8BXFeX9VU
vI21ehmB93bZs8TzBERAXhmKp8sWGEVbSGlzar/9IDYlN8rOo5w+AQKN+rKJqSjz
F/+n47NFw1yTD42OrRNct5mvNBO8DDmjDChefkoK+nqHeEVBMrnL5UL/JmWerWq5
O0SIf9Za8BEK2yzuuyjWzhj+R0shKxNa78FPI6jWXwKBgQDHjt32aLCZ5U44UmCg
qtEw838kZ83RsEv4XUR8dZR+SMdWHm2hquDaBHH3NGKDQvicYObj1Q+fT3tOh54l
vVkjSdde867+0RgXAZzvqsNxloOOFwAZ7Hq5RvM+SnBB83w2tPyXoig6Kn3x17UK
14fqLvowPnrAW1V/2ox1LpuHdwKBgQC9czKDykXXC3lBoIQLy1j4FUtjchUDnaAM
SO4qARUnxrq/7rex9hhAT1uv2hL0c36scPxUPpaDwSFXCLyBeeyFKJofRxH9Rn5d
MiwLgAZ1mP7/WaFVC1H5ExW0Et3xtEgcqX1p0nmg0XzqHpvnbiMtwTl4iz3hr+yt
+fOyNcgluwKBgC0B9uPFVtdO1WZ0heCWxhmRQYK3er8pUOkSOAkOB9C3n2W39Sf6
Pz5MtFt50CIkr6etX0XRXvWiWoAqrCt82ibQV6fNtBE6nYFK1tdjHzN2K/OXEmnG
YSN6chABf/IP9VrtVO7qHsKHpOIvsWBhngDeWYUaAltx/gWZCAbB3UgfAoGBAImv
hVD+2s81SYUGsbEYsqpqX4YAzYD5N+51upHQg52K8wK27c5quqlSg6JEbW432iJd
YyWe7ykGXcKxWL8I63rDTW/Z6RsX9pKo+hXJj+g7r2fJrlTuiz7oPefHpoIZsicS
j1EvZLIaThyg7lG+W9bPDYOsPucdQngWpqQoLjQtAoGAWowtkIoNxSLDqpRjUXFl
uiBMg5nGzNaxCMD3DuXAsyVuWa98Pl5E1m5Mn9OSmSWgMrVLtSrwMOBA2xjqxU6t
VDzhqQxpE23XE48NqT+Fvd3zwZ7EmuZ7jyr5xjhTSa2Fz4S8awt18o12cKTxROOL
deKnn8ytn8j4aYmZAFs9dYI=
-----END PRIVATE KEY-----
"""
ALIPAY_PUBLIC_KEY_PEM = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAk65GbUQeSsWtR/2Xpu4w
+bYVnBVZ589Q/p0lvp0YhSmKOHaaIBPSO8D+ccbJVv2xyNWuE81h2ZFK8+GvFWVF
cQpA7kFY/c/5czgHI1fqHk5euGEO5oES9IPBfkvPjs/jhgECAKyXMy0Stz8FDWZn
yo/zyKQPX0knI7xkzthIAFXwAP4NtMCWJVGzLWSJt4WfuXmSzs4TaLkU7Vl1bi2Z
QcTdM7TYztZjM3hNL6pKuKxDlIUe7i8gwhIu/85b+kndCuLu4Zyhw6h0Io5BzYB+
j3bV2kzejbQ/sOKAEVXTOBhIiN/FWbDPiiA7PQncV90AYP2nWGFOw/8wnUug/igm
7QIDAQAB
-----END PUBLIC KEY-----
"""

APP_ID = "2021000000000001"
SELLER_ID = "2088000000000001"

# What `openssl dgst -sha256 -sign app.pem` gives for EXPECTED_REQUEST_CONTENT (PKCS#1 v1.5 is
# deterministic, so this is a fixed vector).
EXPECTED_REQUEST_CONTENT = (
    'app_id=2021000000000001&biz_content={"out_trade_no":"T1","subject":"测试 & 商品","total_amount":"88.88"}'
    "&charset=utf-8&method=alipay.trade.precreate&sign_type=RSA2&timestamp=2024-01-02 15:04:05&version=1.0"
)
EXPECTED_REQUEST_SIGN = (
    "iItjAkuFqwwKK66op7NSaf9/pFrAHsJX6oLbfBOFcZmXKxPo1jlwKtjCD6hKgGemFBHpU/vwo+p+iFrMULI9kOz0VHXGGh3Kkswu+jkm"
    "4/VGLvO0dcCn4aOWtrRN4ODjakqgPGmIaAI0vFM8zYsxZFuqIwYOe6WC4qR3HmARZZGnNcy5Ce80I0rVdzGey0hGeAMTOlZL6yS/2LM+"
    "J+lwA5VIrjwKruotZHRfgC3lvzH9v2bkfX9VGoQ1OvXitqmC5tbM1/wYyBPSECUZHnBmD10l7hDeFgZtMPw8QIr+L3zoiuwrlKo/Kblu"
    "pFbEu/fP5VE1Yk2GPQucSQgG7XcOmA=="
)


def _crypto_sign(content: str, private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return base64.b64encode(key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def _crypto_verify(content: str, sign_b64: str, public_pem: str) -> None:
    key = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(base64.b64decode(sign_b64), content.encode(), padding.PKCS1v15(), hashes.SHA256())


def _config(**overrides: object) -> AlipayConfig:
    values: dict[str, object] = {
        "gateway_url": "http://127.0.0.1:9/gateway.do",
        "app_id": APP_ID,
        "app_private_key_pem": APP_PRIVATE_KEY_PEM,
        "alipay_public_key_pem": ALIPAY_PUBLIC_KEY_PEM,
        "seller_id": SELLER_ID,
    }
    values.update(overrides)
    return AlipayConfig.model_validate(values)


def _fixed_clock() -> datetime:
    return datetime(2024, 1, 2, 7, 4, 5, tzinfo=UTC)  # 15:04:05 in Beijing


# ---------------------------------------------------------------- request signing


def test_request_sign_content_keeps_sign_type_drops_sign_and_empties_sorts_ascii_raw() -> None:
    params = {
        "version": "1.0",
        "timestamp": "2024-01-02 15:04:05",
        "sign_type": "RSA2",
        "sign": "must-not-appear",
        "notify_url": "",
        "return_url": None,
        "method": "alipay.trade.precreate",
        "charset": "utf-8",
        "biz_content": '{"out_trade_no":"T1","subject":"测试 & 商品","total_amount":"88.88"}',
        "app_id": APP_ID,
    }
    assert request_sign_content(params) == EXPECTED_REQUEST_CONTENT


def test_request_sign_content_sorts_by_ascii_not_locale() -> None:
    assert request_sign_content({"b": "1", "B": "2", "a_b": "3", "aB": "4"}) == "B=2&aB=4&a_b=3&b=1"


def test_rsa2_sign_matches_openssl_vector_and_verifies_independently() -> None:
    signature = rsa2_sign(EXPECTED_REQUEST_CONTENT, APP_PRIVATE_KEY_PEM)
    assert signature == EXPECTED_REQUEST_SIGN
    _crypto_verify(EXPECTED_REQUEST_CONTENT, signature, APP_PUBLIC_KEY_PEM)


def test_rsa2_verify_rejects_tampering_wrong_key_and_garbage() -> None:
    assert rsa2_verify(EXPECTED_REQUEST_CONTENT, EXPECTED_REQUEST_SIGN, APP_PUBLIC_KEY_PEM)
    assert not rsa2_verify(
        EXPECTED_REQUEST_CONTENT.replace("88.88", "88.89"), EXPECTED_REQUEST_SIGN, APP_PUBLIC_KEY_PEM
    )
    assert not rsa2_verify(EXPECTED_REQUEST_CONTENT, EXPECTED_REQUEST_SIGN, ALIPAY_PUBLIC_KEY_PEM)
    assert not rsa2_verify(EXPECTED_REQUEST_CONTENT, "not base64 !!", APP_PUBLIC_KEY_PEM)
    assert not rsa2_verify(EXPECTED_REQUEST_CONTENT, "", APP_PUBLIC_KEY_PEM)


def test_bare_base64_public_key_as_shown_in_the_alipay_console_is_accepted() -> None:
    bare = "".join(line for line in APP_PUBLIC_KEY_PEM.splitlines() if "-----" not in line)
    assert rsa2_verify(EXPECTED_REQUEST_CONTENT, EXPECTED_REQUEST_SIGN, bare)


async def test_page_pay_url_is_signed_over_all_params_including_sign_type() -> None:
    connector = AlipayConnector(_config(), clock=_fixed_clock)
    try:
        result = await connector.prepay(
            PrepayRequest(
                out_trade_no="T_page_1",
                amount_minor=10050,
                currency="CNY",
                description="页面支付",
                scene=PaymentScene.PAGE,
                notify_url="https://merchant.example/notify",
                return_url="https://merchant.example/return?x=1&y=2",
            )
        )
    finally:
        await connector.aclose()
    action = result.payer_action
    assert action["type"] == "redirect"
    url = urlsplit(action["url"])
    assert url.path == "/gateway.do"
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    assert params == action["form"]["fields"]
    assert params["method"] == "alipay.trade.page.pay"
    assert params["timestamp"] == "2024-01-02 15:04:05"
    assert params["return_url"] == "https://merchant.example/return?x=1&y=2"
    biz = json.loads(params["biz_content"])
    assert biz == {
        "out_trade_no": "T_page_1",
        "total_amount": "100.50",
        "subject": "页面支付",
        "product_code": "FAST_INSTANT_TRADE_PAY",
    }
    content = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign")
    assert "sign_type=RSA2" in content
    _crypto_verify(content, params["sign"], APP_PUBLIC_KEY_PEM)


async def test_app_order_string_is_url_encoded_and_signed() -> None:
    connector = AlipayConnector(_config(), clock=_fixed_clock)
    try:
        result = await connector.prepay(
            PrepayRequest(
                out_trade_no="T_app_1",
                amount_minor=1,
                currency="CNY",
                description="app",
                scene=PaymentScene.APP,
                notify_url="https://merchant.example/notify",
                attach="a=b&c",
            )
        )
    finally:
        await connector.aclose()
    order_string = result.payer_action["order_string"]
    assert "biz_content=%7B" in order_string  # values are URL-encoded in the order string
    params = dict(parse_qsl(order_string))
    assert params["method"] == "alipay.trade.app.pay"
    biz = json.loads(params["biz_content"])
    assert biz["total_amount"] == "0.01"
    assert biz["product_code"] == "QUICK_MSECURITY_PAY"
    assert biz["passback_params"] == "a%3Db%26c"
    content = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign")
    _crypto_verify(content, params["sign"], APP_PUBLIC_KEY_PEM)


async def test_prepay_refuses_non_cny_and_bad_amounts_without_calling_out() -> None:
    from services.cashier.connectors.base import ChannelError

    connector = AlipayConnector(_config(), clock=_fixed_clock)
    try:
        for currency, amount in (("USD", 100), ("CNY", 0), ("CNY", -5), ("CNY", 10_000_000_001)):
            with pytest.raises(ChannelError) as info:
                await connector.prepay(
                    PrepayRequest(
                        out_trade_no="T_bad",
                        amount_minor=amount,
                        currency=currency,
                        description="x",
                        scene=PaymentScene.PAGE,
                        notify_url="https://merchant.example/notify",
                    )
                )
            assert info.value.code in ("CURRENCY_NOT_SUPPORTED", "INVALID_AMOUNT")
            assert not info.value.retryable
    finally:
        await connector.aclose()


# ---------------------------------------------------------------- response node extraction

NESTED_NODE = (
    '{"code":"10000","msg":"Success","out_trade_no":"T{1}","note":"a \\"quoted\\" } brace {",'
    '"fund_bill_list":[{"fund_channel":"ALIPAYACCOUNT","amount":"1.00"}],"deep":{"x":{"y":"}"}}}'
)


def test_response_node_name() -> None:
    assert response_node_name("alipay.trade.fastpay.refund.query") == "alipay_trade_fastpay_refund_query_response"


def test_extract_node_text_with_nested_objects_and_braces_in_strings() -> None:
    body = '{"alipay_trade_query_response":' + NESTED_NODE + ',"sign":"abc"}'
    assert extract_node_text(body, "alipay_trade_query_response") == NESTED_NODE


def test_extract_node_text_sign_first_whitespace_and_decoy_key_in_a_string() -> None:
    body = (
        '{ "sign" : "x\\"alipay_trade_query_response\\":{}" ,\n'
        '  "alipay_trade_query_response" :  ' + NESTED_NODE + "  }"
    )
    assert extract_node_text(body, "alipay_trade_query_response") == NESTED_NODE


def test_extract_node_text_ignores_a_nested_key_of_the_same_name() -> None:
    body = '{"other":{"alipay_trade_query_response":{"code":"99999"}},"alipay_trade_query_response":{"code":"10000"}}'
    assert extract_node_text(body, "alipay_trade_query_response") == '{"code":"10000"}'


def test_extract_node_text_absent_and_malformed() -> None:
    assert extract_node_text('{"error_response":{"code":"40002"}}', "alipay_trade_query_response") is None
    with pytest.raises(ResponseFormatError):
        extract_node_text('{"alipay_trade_query_response":{"code":"10000"', "alipay_trade_query_response")
    with pytest.raises(ResponseFormatError):
        extract_node_text("<html>502</html>", "alipay_trade_query_response")


def test_connector_verifies_the_raw_node_text() -> None:
    connector = AlipayConnector(_config())
    sign = _crypto_sign(NESTED_NODE, ALIPAY_PRIVATE_KEY_PEM)
    body = '{"alipay_trade_query_response":' + NESTED_NODE + ',"sign":"' + sign + '"}'
    node = connector._verify_response("alipay.trade.query", body)
    assert node["out_trade_no"] == "T{1}"
    assert node["fund_bill_list"][0]["amount"] == "1.00"

    # Same JSON meaning, different bytes (re-serialised with spaces): the signature must not match.
    reserialised = json.dumps(json.loads(NESTED_NODE))
    with pytest.raises(InvalidSignature):
        connector._verify_response(
            "alipay.trade.query", '{"alipay_trade_query_response":' + reserialised + ',"sign":"' + sign + '"}'
        )
    tampered = NESTED_NODE.replace("1.00", "9.00")
    with pytest.raises(InvalidSignature):
        connector._verify_response(
            "alipay.trade.query", '{"alipay_trade_query_response":' + tampered + ',"sign":"' + sign + '"}'
        )
    wrong_key_sign = _crypto_sign(NESTED_NODE, APP_PRIVATE_KEY_PEM)
    with pytest.raises(InvalidSignature):
        connector._verify_response(
            "alipay.trade.query",
            '{"alipay_trade_query_response":' + NESTED_NODE + ',"sign":"' + wrong_key_sign + '"}',
        )


def test_unsigned_success_is_refused_but_unsigned_gateway_error_is_read() -> None:
    connector = AlipayConnector(_config())
    with pytest.raises(InvalidSignature):
        connector._verify_response("alipay.trade.query", '{"alipay_trade_query_response":{"code":"10000"}}')
    with pytest.raises(InvalidSignature):
        connector._verify_response(
            "alipay.trade.query",
            '{"alipay_trade_query_response":{"code":"40004","sub_code":"ACQ.TRADE_NOT_EXIST"}}',
        )
    node = connector._verify_response(
        "alipay.trade.query",
        '{"alipay_trade_query_response":{"code":"40002","msg":"Invalid Arguments",'
        '"sub_code":"isv.invalid-signature","sub_msg":"验签出错"}}',
    )
    assert node["sub_code"] == "isv.invalid-signature"
    node = connector._verify_response("alipay.trade.query", '{"error_response":{"code":"40001","msg":"x"}}')
    assert node["code"] == "40001"


# ---------------------------------------------------------------- notifications (rsaCheckV1)


def _notification_params(**overrides: str) -> dict[str, str]:
    params = {
        "notify_time": "2024-01-02 15:05:00",
        "notify_type": "trade_status_sync",
        "notify_id": "ac05099524730693a8b330c5ecf72da9786",
        "app_id": APP_ID,
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": "2024010222001400000000000001",
        "out_trade_no": "T_notify_1",
        "buyer_id": "2088102122524333",
        "buyer_logon_id": "159****5620",
        "seller_id": SELLER_ID,
        "seller_email": "merchant@example.com",
        "trade_status": "TRADE_SUCCESS",
        "subject": "测试 商品 & 更多",
        "total_amount": "88.88",
        "receipt_amount": "88.88",
        "buyer_pay_amount": "88.88",
        "gmt_create": "2024-01-02 15:04:05",
        "gmt_payment": "2024-01-02 15:04:55",
        "fund_bill_list": '[{"amount":"88.88","fundChannel":"ALIPAYACCOUNT"}]',
        "a_future_field": "kept in the signed string",
    }
    params.update(overrides)
    return params


def _signed_form(params: dict[str, str], private_pem: str = ALIPAY_PRIVATE_KEY_PEM, encoding: str = "utf-8") -> bytes:
    content = "&".join(f"{k}={params[k]}" for k in sorted(params) if params[k] != "")
    body = dict(params, sign=_crypto_sign(content, private_pem), sign_type="RSA2")
    return urlencode(body, encoding=encoding).encode("ascii")


def test_notification_sign_content_excludes_exactly_sign_and_sign_type() -> None:
    params = {"b": "2", "a": "1", "sign": "s", "sign_type": "RSA2", "empty": "", "zz_unknown": "u"}
    assert notification_sign_content(params) == "a=1&b=2&zz_unknown=u"


def test_payment_notification_verifies_and_maps() -> None:
    connector = AlipayConnector(_config())
    notification = connector.parse_notification({}, _signed_form(_notification_params()))
    assert notification.kind is NotificationKind.PAYMENT
    assert notification.ack_body == b"success"
    assert notification.payment is not None
    assert notification.payment.status is TradeStatus.SUCCEEDED
    assert notification.payment.amount_minor == 8888
    assert notification.payment.out_trade_no == "T_notify_1"
    assert notification.payment.channel_trade_no == "2024010222001400000000000001"
    assert notification.payment.paid_at == datetime(2024, 1, 2, 7, 4, 55, tzinfo=UTC)


def test_notification_tampered_field_wrong_key_other_app_and_missing_sign_are_refused() -> None:
    connector = AlipayConnector(_config())
    body = _signed_form(_notification_params())
    with pytest.raises(InvalidSignature):
        connector.parse_notification({}, body.replace(b"total_amount=88.88", b"total_amount=0.01"))
    with pytest.raises(InvalidSignature):
        connector.parse_notification({}, _signed_form(_notification_params(), private_pem=APP_PRIVATE_KEY_PEM))
    with pytest.raises(InvalidSignature):
        connector.parse_notification({}, _signed_form(_notification_params(app_id="2021009999999999")))
    with pytest.raises(InvalidSignature):
        connector.parse_notification({}, _signed_form(_notification_params(seller_id="2088999999999999")))
    params = _notification_params()
    with pytest.raises(InvalidSignature):
        connector.parse_notification({}, urlencode(params).encode())
    with pytest.raises(InvalidSignature):
        connector.parse_notification({}, body + b"&total_amount=0.01")


def test_notification_signed_with_sign_type_in_content_is_refused() -> None:
    """rsaCheckV2 content (sign_type kept) is the wrong string for payment notifications."""
    connector = AlipayConnector(_config())
    params = dict(_notification_params(), sign_type="RSA2")
    content = "&".join(f"{k}={params[k]}" for k in sorted(params))
    body = urlencode(dict(params, sign=_crypto_sign(content, ALIPAY_PRIVATE_KEY_PEM))).encode()
    with pytest.raises(InvalidSignature):
        connector.parse_notification({}, body)


def test_gbk_notification_is_decoded_in_its_charset() -> None:
    connector = AlipayConnector(_config())
    body = _signed_form(_notification_params(charset="gbk"), encoding="gbk")
    notification = connector.parse_notification({}, body)
    assert notification.payment is not None and notification.payment.status is TradeStatus.SUCCEEDED


def test_refund_and_close_notifications() -> None:
    connector = AlipayConnector(_config())
    refund_body = _signed_form(
        _notification_params(
            trade_status="TRADE_CLOSED",
            out_biz_no="R_1",
            refund_fee="88.88",
            gmt_refund="2024-01-03 10:00:00.123",
        )
    )
    notification = connector.parse_notification({}, refund_body)
    assert notification.kind is NotificationKind.REFUND
    assert notification.refund is not None
    assert notification.refund.status is RefundStatus.SUCCEEDED
    assert notification.refund.out_refund_no == "R_1"
    assert notification.refund.succeeded_at == datetime(2024, 1, 3, 2, 0, 0, 123000, tzinfo=UTC)
    assert notification.payment is not None
    assert notification.payment.status is TradeStatus.SUCCEEDED  # fully refunded, but it was paid

    closed = _notification_params(trade_status="TRADE_CLOSED", gmt_close="2024-01-02 16:00:00")
    del closed["gmt_payment"]
    notification = connector.parse_notification({}, _signed_form(closed))
    assert notification.kind is NotificationKind.PAYMENT
    assert notification.payment is not None and notification.payment.status is TradeStatus.CLOSED


def test_return_redirect_params_verify_like_a_notification() -> None:
    connector = AlipayConnector(_config())
    params = {
        "charset": "utf-8",
        "out_trade_no": "T_page_1",
        "method": "alipay.trade.page.pay.return",
        "total_amount": "100.50",
        "trade_no": "2024010222001400000000000002",
        "auth_app_id": APP_ID,
        "version": "1.0",
        "app_id": APP_ID,
        "seller_id": SELLER_ID,
        "timestamp": "2024-01-02 15:06:00",
    }
    signed = dict(parse_qsl(_signed_form(params).decode()))
    result = connector.parse_return(signed)
    assert result.status is TradeStatus.SUCCEEDED
    assert result.amount_minor == 10050
    with pytest.raises(InvalidSignature):
        connector.parse_return(dict(signed, total_amount="0.01"))


def test_crypto_helper_self_check() -> None:
    """Guard the test helper itself: a wrong key must fail in `cryptography` too."""
    sign = _crypto_sign("x", APP_PRIVATE_KEY_PEM)
    with pytest.raises(CryptoInvalidSignature):
        _crypto_verify("x", sign, ALIPAY_PUBLIC_KEY_PEM)
