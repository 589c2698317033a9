"""The WeChat Pay sandbox on its own, as a real server: strictness, signatures, state, callbacks, bills.

The client here is written from docs/protocols/wechatpay.md with `cryptography` only; sandboxes share no code with
Juhe, and these tests do not use the connector either.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sandboxes.common.testing import CallbackReceiver, SandboxProcess

PORT_ENV = "JUHE_SANDBOX_WECHATPAY_PORT"


def _sandbox_env(data_dir: Path) -> dict[str, str]:
    return {
        "JUHE_DATA_DIR": str(data_dir),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_WECHATPAY_REFUND_AUTO_SECONDS": "0.2",
    }


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver(CallbackReceiver):
    """A real HTTP server; answers each path from a scripted list of statuses (last one repeats)."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[int]] = {}
        super().__init__(replies=self._reply)

    def _reply(self, path: str, n: int) -> tuple[int, bytes]:
        script = self.scripts.get(path, [200])
        return script[min(n, len(script) - 1)], b""

    def url(self, name: str, script: list[int] | None = None) -> str:
        if script is not None:
            self.scripts["/" + name] = script
        return super().url(name)

    def collect(self, name: str, count: int, timeout_seconds: float = 15.0) -> list[Received]:
        return [Received("/" + name, *self.next(name, timeout_seconds=timeout_seconds)) for _ in range(count)]


class Merchant:
    """A WeChat Pay v3 client written from the spec: signs requests, verifies replies."""

    def __init__(self, sandbox: SandboxProcess, registration: dict[str, Any]) -> None:
        self.sandbox = sandbox
        self.mchid: str = registration["mchid"]
        self.serial: str = registration["merchant_cert_serial"]
        key = serialization.load_pem_private_key(registration["merchant_private_key_pem"].encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.key = key
        self.apiv3_key: str = registration["apiv3_key"]
        platform = serialization.load_pem_public_key(registration["platform_public_key_pem"].encode())
        assert isinstance(platform, rsa.RSAPublicKey)
        self.platform = platform
        self.platform_key_id: str = registration["platform_public_key_id"]

    def authorization(self, method: str, uri: str, body: bytes, *, timestamp: int | None = None) -> str:
        timestamp = int(time.time()) if timestamp is None else timestamp
        nonce = secrets.token_hex(16)
        message = f"{method}\n{uri}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = base64.b64encode(self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
        return (
            f'WECHATPAY2-SHA256-RSA2048 mchid="{self.mchid}",nonce_str="{nonce}",timestamp="{timestamp}",'
            f'serial_no="{self.serial}",signature="{signature}"'
        )

    def call(
        self,
        method: str,
        uri: str,
        payload: Any = None,
        *,
        verify: bool = True,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
    ) -> httpx.Response:
        body = b"" if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        sent = {
            "Authorization": self.authorization(method, uri, body, timestamp=timestamp),
            "Accept": "application/json",
        }
        if payload is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        response = httpx.request(method, self.sandbox.base_url + uri, content=body, headers=sent)
        if verify:
            self.check_signature(response.headers, response.content)
        return response

    def check_signature(self, headers: Any, body: bytes) -> None:
        assert headers["Wechatpay-Serial"] == self.platform_key_id
        assert abs(int(headers["Wechatpay-Timestamp"]) - time.time()) < 300
        message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode() + body + b"\n"
        self.platform.verify(
            base64.b64decode(headers["Wechatpay-Signature"]), message, padding.PKCS1v15(), hashes.SHA256()
        )

    def decrypt(self, callback_body: bytes) -> dict[str, Any]:
        resource = json.loads(callback_body)["resource"]
        plaintext = AESGCM(self.apiv3_key.encode()).decrypt(
            resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]), resource["associated_data"].encode()
        )
        data: dict[str, Any] = json.loads(plaintext)
        return data

    def native(self, out_trade_no: str, notify_url: str, total: int = 100, **extra: Any) -> httpx.Response:
        return self.call(
            "POST",
            "/v3/pay/transactions/native",
            {
                "appid": "wxd678efh567hg6787",
                "mchid": self.mchid,
                "description": "sandbox test",
                "out_trade_no": out_trade_no,
                "notify_url": notify_url,
                "amount": {"total": total, "currency": "CNY"},
                **extra,
            },
        )


def _no() -> str:
    return "S" + secrets.token_hex(10)


@pytest.fixture(scope="module")
def sandbox_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wechatpay-sandbox-only")


@pytest.fixture(scope="module")
def sandbox(sandbox_data: Path) -> Iterator[SandboxProcess]:
    with SandboxProcess("sandboxes.wechatpay", port_env=PORT_ENV, env=_sandbox_env(sandbox_data)) as process:
        yield process


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def _register(sandbox: SandboxProcess, mchid: str, **extra: Any) -> Merchant:
    response = httpx.post(
        f"{sandbox.base_url}/control/merchants",
        json={"mchid": mchid, "appid": "wxd678efh567hg6787", "generate_key_pair": True, **extra},
    )
    assert response.status_code == 200, response.text
    return Merchant(sandbox, response.json())


@pytest.fixture(scope="module")
def merchant(sandbox: SandboxProcess) -> Merchant:
    return _register(sandbox, "1900000109")


@pytest.fixture
def faults(sandbox: SandboxProcess) -> Iterator[str]:
    url = f"{sandbox.base_url}/control/faults"
    yield url
    httpx.put(
        url,
        json={
            "error_rate": 0,
            "latency_ms": 0,
            "dark": False,
            "duplicate_notifications": False,
            "out_of_order_notifications": False,
        },
    ).raise_for_status()


def _approve(sandbox: SandboxProcess, out_trade_no: str) -> None:
    response = httpx.post(f"{sandbox.base_url}/control/orders/{out_trade_no}/approve")
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------------------------ health and keys
def test_health_and_platform_key(sandbox: SandboxProcess, merchant: Merchant) -> None:
    assert httpx.get(sandbox.base_url + "/livez").status_code == 200
    assert httpx.get(sandbox.base_url + "/readyz").json()["status"] == "ready"
    assert merchant.platform_key_id.startswith("PUB_KEY_ID_") and len(merchant.platform_key_id) == 39


# ------------------------------------------------------------------------------------ request signatures
def test_request_signature_is_checked_over_raw_uri_and_body(
    sandbox: SandboxProcess, merchant: Merchant, receiver: Receiver
) -> None:
    out_trade_no = _no()
    assert merchant.native(out_trade_no, receiver.url("sig")).status_code == 200
    uri = f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=1900000109"
    assert merchant.call("GET", uri).status_code == 200

    def refused(response: httpx.Response) -> None:
        assert response.status_code == 401 and response.json()["code"] == "SIGN_ERROR", response.text
        merchant.check_signature(response.headers, response.content)  # errors are signed too

    signed_for_other_uri = merchant.authorization("GET", uri.replace("mchid=", "mchid=0"), b"")
    refused(httpx.get(sandbox.base_url + uri, headers={"Authorization": signed_for_other_uri}))
    refused(httpx.get(sandbox.base_url + uri))  # no Authorization at all
    refused(merchant.call("GET", uri, timestamp=int(time.time()) - 301))
    refused(merchant.call("GET", uri, headers={"Authorization": "Bearer x"}))
    bad_serial = merchant.authorization("GET", uri, b"").replace(merchant.serial, "ABCDEF")
    refused(httpx.get(sandbox.base_url + uri, headers={"Authorization": bad_serial}))
    unknown = merchant.authorization("GET", uri, b"").replace('mchid="1900000109"', 'mchid="1999999999"')
    refused(httpx.get(sandbox.base_url + uri, headers={"Authorization": unknown}))


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": {"total": 1.5, "currency": "CNY"}}, "PARAM_ERROR"),
        ({"amount": {"total": 100, "currency": "USD"}}, "PARAM_ERROR"),
        ({"amount": {"total": 0}}, "PARAM_ERROR"),
        ({"out_trade_no": "abc"}, "PARAM_ERROR"),
        ({"notify_url": "https://shop.example/notify?x=1"}, "PARAM_ERROR"),
        ({"surprise": 1}, "PARAM_ERROR"),
        ({"appid": "wx0000000000000000"}, "APPID_MCHID_NOT_MATCH"),
        ({"mchid": "1900000999"}, "INVALID_REQUEST"),
    ],
)
def test_order_body_is_validated_strictly(
    merchant: Merchant, receiver: Receiver, change: dict[str, Any], code: str
) -> None:
    body = {
        "appid": "wxd678efh567hg6787",
        "mchid": "1900000109",
        "description": "x",
        "out_trade_no": _no(),
        "notify_url": receiver.url("strict"),
        "amount": {"total": 100, "currency": "CNY"},
        **change,
    }
    response = merchant.call("POST", "/v3/pay/transactions/native", body)
    assert response.status_code == 400 and response.json()["code"] == code, response.text


def test_jsapi_needs_openid_and_h5_needs_scene(merchant: Merchant, receiver: Receiver) -> None:
    base = {
        "appid": "wxd678efh567hg6787",
        "mchid": "1900000109",
        "description": "x",
        "notify_url": receiver.url("strict"),
        "amount": {"total": 100},
    }
    assert merchant.call("POST", "/v3/pay/transactions/jsapi", {**base, "out_trade_no": _no()}).status_code == 400
    assert merchant.call("POST", "/v3/pay/transactions/h5", {**base, "out_trade_no": _no()}).status_code == 400
    ok = merchant.call(
        "POST",
        "/v3/pay/transactions/h5",
        {**base, "out_trade_no": _no(), "scene_info": {"payer_client_ip": "203.0.113.9", "h5_info": {"type": "Wap"}}},
    )
    assert ok.status_code == 200 and "h5_url" in ok.json()


def test_order_state_machine_and_errors(sandbox: SandboxProcess, merchant: Merchant, receiver: Receiver) -> None:
    out_trade_no = _no()
    first = merchant.native(out_trade_no, receiver.url("states"))
    assert first.json()["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert merchant.native(out_trade_no, receiver.url("states")).json() == first.json()
    used = merchant.native(out_trade_no, receiver.url("states"), total=101)
    assert (used.status_code, used.json()["code"]) == (403, "OUT_TRADE_NO_USED")
    missing = merchant.call("GET", f"/v3/pay/transactions/out-trade-no/{_no()}?mchid=1900000109")
    assert (missing.status_code, missing.json()["code"]) == (404, "ORDER_NOT_EXIST")
    query = f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=1900000109"
    unpaid = merchant.call("GET", query).json()
    assert unpaid["trade_state"] == "NOTPAY" and "transaction_id" not in unpaid
    _approve(sandbox, out_trade_no)
    paid = merchant.call("GET", query).json()
    assert paid["trade_state"] == "SUCCESS" and paid["amount"]["payer_total"] == 100
    by_id = merchant.call("GET", f"/v3/pay/transactions/id/{paid['transaction_id']}?mchid=1900000109").json()
    assert by_id["out_trade_no"] == out_trade_no
    close = merchant.call("POST", f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close", {"mchid": "1900000109"})
    assert close.status_code == 400 and close.json()["code"] == "ORDERPAID"
    assert httpx.post(f"{sandbox.base_url}/control/orders/{out_trade_no}/decline").status_code == 409


def test_expired_order_reads_closed(merchant: Merchant, receiver: Receiver) -> None:
    out_trade_no = _no()
    merchant.native(out_trade_no, receiver.url("expire"), time_expire="2020-01-01T00:00:00+08:00")
    state = merchant.call("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=1900000109").json()
    assert state["trade_state"] == "CLOSED"


# ------------------------------------------------------------------------------------ callbacks
def test_transaction_callback_is_encrypted_signed_and_retried(
    sandbox: SandboxProcess, merchant: Merchant, receiver: Receiver
) -> None:
    out_trade_no = _no()
    merchant.native(out_trade_no, receiver.url("retry", script=[500, 503, 204]))
    _approve(sandbox, out_trade_no)
    attempts = receiver.collect("retry", 3)
    assert len({a.body for a in attempts}) == 1  # the same event each time
    for attempt in attempts:
        merchant.check_signature(attempt.headers, attempt.body)
        assert attempt.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    envelope = json.loads(attempts[0].body)
    assert envelope["event_type"] == "TRANSACTION.SUCCESS" and envelope["resource_type"] == "encrypt-resource"
    assert envelope["resource"]["algorithm"] == "AEAD_AES_256_GCM" and len(envelope["resource"]["nonce"]) == 12
    resource = merchant.decrypt(attempts[0].body)
    assert resource["out_trade_no"] == out_trade_no and resource["trade_state"] == "SUCCESS"
    log = httpx.get(f"{sandbox.base_url}/control/notifications", params={"subject": out_trade_no}).json()
    assert [(d["attempt"], d["status_code"], d["acknowledged"]) for d in log["deliveries"]] == [
        (1, 500, False),
        (2, 503, False),
        (3, 204, True),
    ]


def test_duplicate_and_out_of_order_callbacks(
    sandbox: SandboxProcess, merchant: Merchant, receiver: Receiver, faults: str
) -> None:
    httpx.put(faults, json={"duplicate_notifications": True}).raise_for_status()
    once = _no()
    merchant.native(once, receiver.url("dup"))
    _approve(sandbox, once)
    first, second = receiver.collect("dup", 2)
    assert json.loads(first.body)["id"] == json.loads(second.body)["id"]

    httpx.put(faults, json={"duplicate_notifications": False, "out_of_order_notifications": True}).raise_for_status()
    earlier, later = _no(), _no()
    merchant.native(earlier, receiver.url("order"))
    merchant.native(later, receiver.url("order"))
    _approve(sandbox, earlier)
    _approve(sandbox, later)
    got = [merchant.decrypt(r.body)["out_trade_no"] for r in receiver.collect("order", 2)]
    assert got == [later, earlier]


def test_refund_auto_success_with_callback(sandbox: SandboxProcess, merchant: Merchant, receiver: Receiver) -> None:
    out_trade_no, out_refund_no = _no(), _no()
    merchant.native(out_trade_no, receiver.url("refund-order"), total=1000)
    _approve(sandbox, out_trade_no)
    body = {
        "out_trade_no": out_trade_no,
        "out_refund_no": out_refund_no,
        "notify_url": receiver.url("refund"),
        "amount": {"refund": 400, "total": 1000, "currency": "CNY"},
    }
    created = merchant.call("POST", "/v3/refund/domestic/refunds", body)
    assert created.status_code == 200 and created.json()["status"] == "PROCESSING"
    assert merchant.call("POST", "/v3/refund/domestic/refunds", body).json()["refund_id"] == created.json()["refund_id"]
    over = merchant.call(
        "POST",
        "/v3/refund/domestic/refunds",
        {**body, "out_refund_no": _no(), "amount": {"refund": 601, "total": 1000}},
    )
    assert over.status_code == 400
    wrong_total = merchant.call(
        "POST", "/v3/refund/domestic/refunds", {**body, "out_refund_no": _no(), "amount": {"refund": 1, "total": 999}}
    )
    assert wrong_total.status_code == 400
    (callback,) = receiver.collect("refund", 1)  # the auto-success timer fired
    resource = merchant.decrypt(callback.body)
    assert json.loads(callback.body)["event_type"] == "REFUND.SUCCESS"
    assert (resource["refund_status"], resource["amount"]["refund"], resource["mchid"]) == (
        "SUCCESS",
        400,
        "1900000109",
    )
    final = merchant.call("GET", f"/v3/refund/domestic/refunds/{out_refund_no}").json()
    assert final["status"] == "SUCCESS" and final["success_time"]
    order = merchant.call("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=1900000109").json()
    assert order["trade_state"] == "REFUND"


# ------------------------------------------------------------------------------------ partner mode
def test_partner_mode_requires_bound_sub_merchant(sandbox: SandboxProcess, receiver: Receiver) -> None:
    provider = _register(sandbox, "1900000100", appid="wx8888888888888888", sub_merchants=[{"sub_mchid": "1900000111"}])
    body = {
        "sp_appid": "wx8888888888888888",
        "sp_mchid": "1900000100",
        "description": "x",
        "out_trade_no": _no(),
        "notify_url": receiver.url("partner"),
        "amount": {"total": 1},
    }
    refused = provider.call("POST", "/v3/pay/partner/transactions/native", {**body, "sub_mchid": "1900000999"})
    assert (refused.status_code, refused.json()["code"]) == (403, "NO_AUTH")
    created = provider.call("POST", "/v3/pay/partner/transactions/native", {**body, "sub_mchid": "1900000111"})
    assert created.status_code == 200
    uri = f"/v3/pay/partner/transactions/out-trade-no/{body['out_trade_no']}?sp_mchid=1900000100&sub_mchid=1900000111"
    view = provider.call("GET", uri).json()
    assert (view["sp_mchid"], view["sub_mchid"], view["trade_state"]) == ("1900000100", "1900000111", "NOTPAY")
    close = provider.call(
        "POST",
        f"/v3/pay/partner/transactions/out-trade-no/{body['out_trade_no']}/close",
        {"sp_mchid": "1900000100", "sub_mchid": "1900000111"},
    )
    assert close.status_code == 204 and close.content == b""


# ------------------------------------------------------------------------------------ bills
def test_bill_files_formats_hash_and_download_rules(sandbox: SandboxProcess, receiver: Receiver) -> None:
    biller = _register(sandbox, "1900000444")
    paid, refunded = _no(), _no()
    for number in (paid, refunded):
        biller.native(number, receiver.url("bill"), total=8888)
        _approve(sandbox, number)
    refund = biller.call(
        "POST",
        "/v3/refund/domestic/refunds",
        {"out_trade_no": refunded, "out_refund_no": _no(), "amount": {"refund": 888, "total": 8888}},
    )
    assert refund.status_code == 200
    day = biller.call("GET", f"/v3/pay/transactions/out-trade-no/{paid}?mchid=1900000444").json()["success_time"][:10]

    columns = {"ALL": 27, "SUCCESS": 20, "REFUND": 29}
    for bill_type, column_count in columns.items():
        step1 = biller.call("GET", f"/v3/bill/tradebill?bill_date={day}&bill_type={bill_type}").json()
        assert step1["hash_type"] == "SHA1"
        download_uri = step1["download_url"].removeprefix(sandbox.base_url)
        file = biller.call("GET", download_uri, verify=False)
        assert file.status_code == 200 and "Wechatpay-Signature" not in file.headers
        assert hashlib.sha1(file.content).hexdigest() == step1["hash_value"]
        lines = file.content.decode("utf-8").split("\r\n")
        assert lines[-1] == "" and not lines[0].startswith("`") and len(lines[0].split(",")) == column_count
        rows = [line for line in lines[1:-3]]
        assert rows and all(row.startswith("`") and row.count(",`") == column_count - 1 for row in rows)
        assert lines[-3].startswith("总交易单数") and lines[-2].startswith("`")
        if bill_type == "ALL":
            assert len(rows) == 3 and lines[-2].split(",")[:3] == ["`3", "`177.76", "`8.88"]
            assert any(",`0.53328," in row for row in rows)  # 0.60% of 88.88 to 5 decimals
        if bill_type == "SUCCESS":  # no refunds, no refund totals
            assert lines[-3] == "总交易单数,应结订单总金额,手续费总金额,订单总金额" and lines[-2].count(",`") == 3

    gz = biller.call("GET", f"/v3/bill/tradebill?bill_date={day}&tar_type=GZIP").json()
    packed = biller.call("GET", gz["download_url"].removeprefix(sandbox.base_url), verify=False)
    assert hashlib.sha1(gzip.decompress(packed.content)).hexdigest() == gz["hash_value"]

    download_uri = gz["download_url"].removeprefix(sandbox.base_url)
    assert httpx.get(sandbox.base_url + download_uri).status_code == 401  # the request must be signed
    stranger = _register(sandbox, "1900000555")
    assert stranger.call("GET", download_uri, verify=False).json()["code"] == "NO_AUTH"
    empty = biller.call("GET", "/v3/bill/tradebill?bill_date=2001-01-01")
    assert (empty.status_code, empty.json()["code"]) == (400, "NO_STATEMENT_EXIST")
    bad = biller.call("GET", f"/v3/bill/tradebill?bill_date={day}&bill_type=WEEKLY")
    assert bad.status_code == 400


# ------------------------------------------------------------------------------------ faults and restart
def test_faults_error_rate_and_dark(sandbox: SandboxProcess, merchant: Merchant, faults: str) -> None:
    uri = f"/v3/pay/transactions/out-trade-no/{_no()}?mchid=1900000109"
    httpx.put(faults, json={"error_rate": 1.0}).raise_for_status()
    failed = merchant.call("GET", uri)
    assert (failed.status_code, failed.json()["code"]) == (500, "SYSTEM_ERROR")
    httpx.put(faults, json={"error_rate": 0, "dark": True}).raise_for_status()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(sandbox.base_url + uri, timeout=httpx.Timeout(0.3, connect=2.0))
    assert httpx.get(sandbox.base_url + "/livez").status_code == 200  # control paths keep answering
    assert httpx.put(faults, json={"error_rate": 2}).status_code == 422


def test_orders_and_keys_survive_a_restart(sandbox_data: Path, receiver: Receiver) -> None:
    data_dir = sandbox_data.parent / (sandbox_data.name + "-restart")
    env = _sandbox_env(data_dir)
    with SandboxProcess("sandboxes.wechatpay", port_env=PORT_ENV, env=env) as first:
        merchant = _register(first, "1900000666")
        out_trade_no = _no()
        merchant.native(out_trade_no, receiver.url("restart"))
        _approve(first, out_trade_no)
    with SandboxProcess("sandboxes.wechatpay", port_env=PORT_ENV, env=env) as second:
        merchant.sandbox = second
        view = merchant.call("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=1900000666").json()
    assert view["trade_state"] == "SUCCESS"  # and check_signature passed with the same platform key
