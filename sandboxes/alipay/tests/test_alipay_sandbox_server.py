"""The Alipay sandbox is strict: driven over real HTTP by an independent RSA2 client written here.

Nothing from Juhe's connector is used, so these tests pin the sandbox to the protocol
(docs/protocols/alipay.md, §10) rather than to whatever the connector happens to do.
"""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandboxes.common.testing import CallbackReceiver, SandboxProcess

BEIJING = timezone(timedelta(hours=8))
WAIT_SECONDS_MAX = 15.0


def _now_beijing() -> str:
    return datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def _sign(content: str, private_pem: str) -> str:
    signature = _private_key(private_pem).sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def _verifies(content: str, sign_b64: str, public_pem: str) -> bool:
    try:
        _public_key(public_pem).verify(
            base64.b64decode(sign_b64), content.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


class Client:
    """A minimal, independent Alipay OpenAPI client."""

    def __init__(self, base_url: str, app: dict[str, Any]) -> None:
        self.gateway = base_url + "/gateway.do"
        self.app = app

    def params(self, method: str, biz: dict[str, Any] | None, **common: str) -> dict[str, str]:
        params = {
            "app_id": self.app["app_id"],
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": _now_beijing(),
            "version": "1.0",
            **common,
        }
        if biz is not None:
            params["biz_content"] = json.dumps(biz, ensure_ascii=False)
        content = "&".join(f"{k}={params[k]}" for k in sorted(params) if params[k])
        params["sign"] = _sign(content, self.app["app_private_key_pem"])
        return params

    def call(self, method: str, biz: dict[str, Any] | None, **common: str) -> dict[str, Any]:
        """POST all params as a form; check the response signature over the raw node text."""
        response = httpx.post(self.gateway, data=self.params(method, biz, **common))
        return self.read(method, response)

    def read(self, method: str, response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        text = response.text
        document = json.loads(text)
        name = (
            method.replace(".", "_") + "_response"
            if f'"{method.replace(".", "_")}_response"' in text
            else ("error_response")
        )
        node = document[name]
        if "sign" in document:
            prefix = '{"' + name + '":'
            assert text.startswith(prefix)
            node_text = text[len(prefix) : text.rindex(',"sign":"')]
            assert json.loads(node_text) == node
            assert _verifies(node_text, document["sign"], self.app["alipay_public_key_pem"])
        return {"node": node, "signed": "sign" in document}


class Receiver(CallbackReceiver):
    """Real notify endpoint with a scripted answer per delivery (default `success`)."""

    def __init__(self) -> None:
        self.script: list[str] = []
        super().__init__(replies=lambda _path, _n: (200, (self.script.pop(0) if self.script else "success").encode()))
        self.notify_url = self.url("notify")


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS_MAX
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("alipay-sandbox-server")


@pytest.fixture(scope="module")
def sandbox(data_dir: Path) -> Iterator[SandboxProcess]:
    env = {"JUHE_DATA_DIR": str(data_dir), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    with SandboxProcess("sandboxes.alipay", port_env="JUHE_SANDBOX_ALIPAY_PORT", env=env) as process:
        yield process


@pytest.fixture(scope="module")
def app(sandbox: SandboxProcess) -> dict[str, Any]:
    response = httpx.post(sandbox.base_url + "/control/apps", json={"seller_id": "2088000000000042"})
    assert response.status_code == 200
    return dict(response.json())


@pytest.fixture(scope="module")
def client(sandbox: SandboxProcess, app: dict[str, Any]) -> Client:
    return Client(sandbox.base_url, app)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


@pytest.fixture
def control(sandbox: SandboxProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url) as http:
        yield http
        http.put("/control/faults", json={"error_rate": 0.0, "dark": False, "duplicate_notifications": False})


_counter = iter(range(1_000_000))


def _out_trade_no() -> str:
    return f"S{int(time.time() * 1000)}_{next(_counter)}"


def _precreate(client: Client, amount: str = "100.00", **common: str) -> str:
    out_trade_no = _out_trade_no()
    answer = client.call(
        "alipay.trade.precreate", {"out_trade_no": out_trade_no, "total_amount": amount, "subject": "测试"}, **common
    )
    assert answer["node"]["code"] == "10000", answer
    return out_trade_no


# ---------------------------------------------------------------- the gateway is strict


def test_health_probes(sandbox: SandboxProcess) -> None:
    assert httpx.get(sandbox.base_url + "/livez").json()["status"] == "ok"
    assert httpx.get(sandbox.base_url + "/readyz").status_code == 200


def test_query_string_and_form_body_are_merged_like_the_java_sdk(client: Client) -> None:
    params = client.params("alipay.trade.query", {"out_trade_no": "nope"})
    biz = params.pop("biz_content")
    response = httpx.post(client.gateway + "?" + urlencode(params), data={"biz_content": biz})
    answer = client.read("alipay.trade.query", response)
    assert answer["signed"]
    assert answer["node"]["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    conflicting = httpx.post(
        client.gateway + "?" + urlencode(params), data={"biz_content": biz, "app_id": "2021000000000000"}
    )
    assert client.read("alipay.trade.query", conflicting)["node"]["sub_code"] == "isv.invalid-parameter"


def test_signature_covers_sign_type_and_every_param(client: Client) -> None:
    params = client.params("alipay.trade.query", {"out_trade_no": "nope"})
    for tampered in ({**params, "version": "2.0"}, {**params, "biz_content": '{"out_trade_no":"other"}'}):
        answer = client.read("alipay.trade.query", httpx.post(client.gateway, data=tampered))
        if tampered["version"] == "2.0":
            assert answer["node"]["sub_code"] == "isv.invalid-version"
            continue
        assert answer["node"]["code"] == "40002"
        assert answer["node"]["sub_code"] == "isv.invalid-signature"
        assert not answer["signed"]
    # sign_type is inside the signed string: a signature made without it does not verify.
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    content = "&".join(f"{k}={unsigned[k]}" for k in sorted(unsigned) if k != "sign_type")
    answer = client.read(
        "alipay.trade.query",
        httpx.post(client.gateway, data={**unsigned, "sign": _sign(content, client.app["app_private_key_pem"])}),
    )
    assert answer["node"]["sub_code"] == "isv.invalid-signature"


@pytest.mark.parametrize(
    ("change", "code", "sub_code"),
    [
        ({"sign": None}, "40001", "isv.missing-signature"),
        ({"timestamp": None}, "40001", "isv.missing-timestamp"),
        ({"app_id": "2021999999999999"}, "40002", "isv.invalid-app-id"),
        ({"sign_type": "RSA"}, "40002", "isv.invalid-signature-type"),
        ({"timestamp": "2024/01/01 00:00:00"}, "40002", "isv.invalid-timestamp"),
        ({"charset": "gbk"}, "40002", "isv.invalid-charset"),
    ],
)
def test_common_parameter_refusals(client: Client, change: dict[str, str | None], code: str, sub_code: str) -> None:
    params: dict[str, str] = client.params("alipay.trade.query", {"out_trade_no": "x"})
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    answer = client.read("alipay.trade.query", httpx.post(client.gateway, data=params))
    assert (answer["node"]["code"], answer["node"]["sub_code"]) == (code, sub_code)


def test_unknown_method_uses_error_response(client: Client) -> None:
    answer = client.call("alipay.trade.nonsense", {"out_trade_no": "x"})
    assert answer["node"]["sub_code"] == "isv.invalid-method"


@pytest.mark.parametrize("amount", ["1.001", "0.00", "-1.00", "100000000.01", "1e2", 1.555, -1.5, 0, True])
def test_amounts_are_strict(client: Client, amount: Any) -> None:
    answer = client.call(
        "alipay.trade.precreate", {"out_trade_no": _out_trade_no(), "total_amount": amount, "subject": "x"}
    )
    assert answer["node"]["sub_code"] == "ACQ.INVALID_PARAMETER"


# ---------------------------------------------------------------- trade rules


def test_precreate_trade_does_not_exist_until_scanned(client: Client, control: httpx.Client) -> None:
    out_trade_no = _precreate(client)
    for method in ("alipay.trade.query", "alipay.trade.close"):
        assert client.call(method, {"out_trade_no": out_trade_no})["node"]["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    assert control.post(f"/control/trades/{out_trade_no}/scan").json()["status"] == "WAIT_BUYER_PAY"
    node = client.call("alipay.trade.query", {"out_trade_no": out_trade_no})["node"]
    assert (node["code"], node["trade_status"], node["total_amount"]) == ("10000", "WAIT_BUYER_PAY", "100.00")
    assert "send_pay_date" not in node


def test_reused_out_trade_no_with_other_amount_is_inconsistent(client: Client) -> None:
    out_trade_no = _precreate(client)
    same = client.call(
        "alipay.trade.precreate", {"out_trade_no": out_trade_no, "total_amount": "100.00", "subject": "测试"}
    )
    assert same["node"]["code"] == "10000"
    other = client.call(
        "alipay.trade.precreate", {"out_trade_no": out_trade_no, "total_amount": "99.00", "subject": "测试"}
    )
    assert other["node"]["sub_code"] == "ACQ.CONTEXT_INCONSISTENT"


def test_close_only_from_wait_buyer_pay_and_refund_rules(client: Client, control: httpx.Client) -> None:
    out_trade_no = _precreate(client)
    control.post(f"/control/trades/{out_trade_no}/approve")
    closed = client.call("alipay.trade.close", {"out_trade_no": out_trade_no})["node"]
    assert closed["sub_code"] == "ACQ.TRADE_STATUS_ERROR"

    def refund(request_no: str, amount: str) -> dict[str, Any]:
        biz = {"out_trade_no": out_trade_no, "refund_amount": amount, "out_request_no": request_no}
        return dict(client.call("alipay.trade.refund", biz)["node"])

    first = refund("r1", "60.00")
    assert (first["code"], first["fund_change"], first["refund_fee"]) == ("10000", "Y", "60.00")
    assert refund("r1", "60.00")["fund_change"] == "N"
    assert refund("r1", "10.00")["sub_code"] == "ACQ.INVALID_PARAMETER"
    assert refund("r2", "40.01")["sub_code"] == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    partial_without_no = client.call("alipay.trade.refund", {"out_trade_no": out_trade_no, "refund_amount": "1.00"})
    assert partial_without_no["node"]["sub_code"] == "ACQ.INVALID_PARAMETER"
    assert refund("r2", "40.00")["refund_fee"] == "100.00"
    node = client.call("alipay.trade.query", {"out_trade_no": out_trade_no})["node"]
    assert node["trade_status"] == "TRADE_CLOSED"
    assert node["send_pay_date"]
    assert refund("r3", "0.01")["sub_code"] == "ACQ.TRADE_HAS_CLOSE"

    query = {"out_trade_no": out_trade_no, "out_request_no": "r2", "query_options": ["gmt_refund_pay"]}
    found = client.call("alipay.trade.fastpay.refund.query", query)["node"]
    assert (found["refund_status"], found["refund_amount"]) == ("REFUND_SUCCESS", "40.00")
    assert found["gmt_refund_pay"]
    unknown = client.call("alipay.trade.fastpay.refund.query", {**query, "out_request_no": "r9"})["node"]
    assert unknown == {"code": "10000", "msg": "Success"}


def test_expired_precreate_cannot_be_scanned(client: Client, control: httpx.Client) -> None:
    past = (datetime.now(BEIJING) - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    out_trade_no = _out_trade_no()
    biz = {"out_trade_no": out_trade_no, "total_amount": "1.00", "subject": "x", "time_expire": past}
    assert client.call("alipay.trade.precreate", biz)["node"]["code"] == "10000"
    refused = control.post(f"/control/trades/{out_trade_no}/scan")
    assert refused.status_code == 409
    assert refused.json()["detail"]["sub_code"] == "ACQ.TRADE_HAS_CLOSE"


# ---------------------------------------------------------------- notifications


def test_notifications_are_signed_for_rsa_check_v1_and_retried_until_literal_success(
    client: Client, control: httpx.Client, receiver: Receiver
) -> None:
    receiver.script = ["SUCCESS", "success\n", "success"]
    out_trade_no = _precreate(client, notify_url=receiver.notify_url)
    control.post(f"/control/trades/{out_trade_no}/approve")
    wait_for(lambda: len(receiver.bodies) >= 3, "three deliveries")
    params = dict(parse_qsl(receiver.bodies[-1].decode()))
    assert params["notify_type"] == "trade_status_sync"
    assert params["trade_status"] == "TRADE_SUCCESS"
    assert params["sign_type"] == "RSA2"
    assert "alipay_cert_sn" not in params
    v1 = "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type"))
    v2 = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign")
    assert _verifies(v1, params["sign"], client.app["alipay_public_key_pem"])
    assert not _verifies(v2, params["sign"], client.app["alipay_public_key_pem"])
    assert params["seller_id"] == "2088000000000042"
    log: list[dict[str, Any]] = []

    def acknowledged() -> bool:
        nonlocal log
        log = control.get("/control/notifications", params={"subject": out_trade_no}).json()["deliveries"]
        return any(entry["acknowledged"] for entry in log)

    wait_for(acknowledged, "the acknowledgement in the delivery log")
    assert [entry["acknowledged"] for entry in log] == [False, False, True]


def test_duplicate_notification_fault(client: Client, control: httpx.Client, receiver: Receiver) -> None:
    control.put("/control/faults", json={"duplicate_notifications": True})
    out_trade_no = _precreate(client, notify_url=receiver.notify_url)
    control.post(f"/control/trades/{out_trade_no}/approve")
    wait_for(lambda: len(receiver.bodies) >= 2, "the duplicate")
    ids = {dict(parse_qsl(body.decode()))["notify_id"] for body in receiver.bodies}
    assert len(ids) == 1


# ---------------------------------------------------------------- bills and faults


def test_bill_zip_has_the_real_layout(client: Client, control: httpx.Client) -> None:
    out_trade_no = _precreate(client, amount="12.34")
    control.post(f"/control/trades/{out_trade_no}/approve")
    bill_date = datetime.now(BEIJING).date().isoformat()
    node = client.call(
        "alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": bill_date}
    )["node"]
    assert node["code"] == "10000"
    data = httpx.get(node["bill_download_url"]).content
    assert "业务明细(汇总).csv".encode("gbk") in data  # member names are raw GBK bytes
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        assert all(info.flag_bits & 0x800 == 0 for info in infos)
        names = [info.filename.encode("cp437").decode("gbk") for info in infos]
        detail_name = next(name for name in names if name.endswith("_业务明细.csv"))
        assert detail_name.startswith("2088000000000042_")
        detail = archive.read(infos[names.index(detail_name)]).decode("gbk")
    lines = detail.split("\r\n")
    assert lines[0] == "#支付宝业务明细查询"
    assert lines[1] == "#账号：[20880000000000420156]"
    assert lines[4].startswith("支付宝交易号,商户订单号,业务类型")
    assert "订单金额（元）" in lines[4]
    row = next(line for line in lines if f"{out_trade_no}\t," in line)
    cells = row.split(",")
    assert cells[2] == "交易\t"
    assert cells[0].endswith("\t")
    assert cells[11] == "12.34"
    assert cells[22] == "-0.07"  # 0.60% of 12.34 = 0.074 → 0.07, charged
    assert any(line.startswith("#交易合计：") for line in lines)

    expired = httpx.get(node["bill_download_url"].replace("token=", "token=x"))
    assert expired.status_code == 404


def test_error_rate_fault_answers_signed_system_errors(client: Client, control: httpx.Client) -> None:
    control.put("/control/faults", json={"error_rate": 1.0})
    trade = client.call("alipay.trade.query", {"out_trade_no": "x"})
    assert trade["signed"]
    assert (trade["node"]["code"], trade["node"]["sub_code"]) == ("40004", "ACQ.SYSTEM_ERROR")
    bill = client.call("alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": "2024-01"})
    assert (bill["node"]["code"], bill["node"]["sub_code"]) == ("20000", "isp.unknow-error")
    assert httpx.get(client.gateway.replace("/gateway.do", "/readyz")).status_code == 200  # control stays up


def test_keys_and_apps_survive_a_restart(data_dir: Path, sandbox: SandboxProcess, app: dict[str, Any]) -> None:
    env = {"JUHE_DATA_DIR": str(data_dir)}
    with SandboxProcess("sandboxes.alipay", port_env="JUHE_SANDBOX_ALIPAY_PORT", env=env) as second:
        again = httpx.get(f"{second.base_url}/control/apps/{app['app_id']}").json()
        assert again["alipay_public_key_pem"] == app["alipay_public_key_pem"]
        answer = Client(second.base_url, app).call("alipay.trade.query", {"out_trade_no": "x"})
        assert answer["node"]["sub_code"] == "ACQ.TRADE_NOT_EXIST"
