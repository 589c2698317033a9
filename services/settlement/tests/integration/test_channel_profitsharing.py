"""Channel profit sharing: WeChat Pay (docs/protocols/wechatpay.md §11) and Alipay royalty
(docs/protocols/alipay.md §9), the connectors' calls against the real sandboxes over real HTTP with real
signatures. Lives with settlement, the service that decides splits; the calls themselves are the cashier
connectors' (the cashier owns the channel keys)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from sandboxes.common.testing import SandboxProcess
from services.cashier.connectors.alipay import AlipayConfig, AlipayConnector, royalty
from services.cashier.connectors.base import ChannelError, Connector, PrepayRequest
from services.cashier.connectors.wechatpay import WechatPayConfig, WechatPayConnector
from services.cashier.connectors.wechatpay import profitsharing as ps
from services.cashier.domain.payments import PaymentScene

MCHID, APPID = "1900000309", "wxd678efh567hg6787"


@pytest.fixture(scope="module")
def wechat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxProcess, dict[str, Any]]]:
    env = {"JUHE_DATA_DIR": str(tmp_path_factory.mktemp("ps-wechat")), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    with SandboxProcess("sandboxes.wechatpay", port_env="JUHE_SANDBOX_WECHATPAY_PORT", env=env) as sandbox:
        merchant = httpx.post(
            sandbox.base_url + "/control/merchants", json={"mchid": MCHID, "appid": APPID, "generate_key_pair": True}
        )
        merchant.raise_for_status()
        yield sandbox, merchant.json()


@pytest.fixture
async def connector(wechat: tuple[SandboxProcess, dict[str, Any]]) -> AsyncIterator[WechatPayConnector]:
    sandbox, keys = wechat
    config = WechatPayConfig(
        base_url=sandbox.base_url,
        mchid=MCHID,
        appid=APPID,
        merchant_private_key_pem=keys["merchant_private_key_pem"],
        merchant_cert_serial=keys["merchant_cert_serial"],
        platform_public_key_pem=keys["platform_public_key_pem"],
        platform_public_key_id=keys["platform_public_key_id"],
        apiv3_key=keys["apiv3_key"],
    )
    async with WechatPayConnector(config) as c:
        yield c


async def paid(
    connector: Connector,
    sandbox: SandboxProcess,
    approve_path: str,
    *,
    profit_sharing: bool,
    params: dict[str, str] | None = None,
) -> str:
    """A 100.00 CNY native-QR trade the sandbox approved (as if the payer paid); its channel trade number.
    `approve_path` has `{}` for the out_trade_no: each sandbox names its control route its own way."""
    out_trade_no = uuid.uuid4().hex
    await connector.prepay(
        PrepayRequest(
            out_trade_no=out_trade_no,
            amount_minor=10_000,
            currency="CNY",
            description="Tuition",
            scene=PaymentScene.NATIVE_QR,
            notify_url="http://127.0.0.1:9/notify",
            profit_sharing=profit_sharing,
        )
    )
    async with httpx.AsyncClient() as plain:
        r = await plain.post(sandbox.base_url + approve_path.format(out_trade_no), params=params)
        assert r.status_code == 200, r.text
    paid = await connector.query(out_trade_no)
    assert paid.channel_trade_no
    return paid.channel_trade_no


async def paid_order(connector: WechatPayConnector, sandbox: SandboxProcess, *, profit_sharing: bool) -> str:
    return await paid(
        connector, sandbox, "/control/orders/{}/approve", profit_sharing=profit_sharing, params={"mchid": MCHID}
    )


async def test_profit_sharing_order(connector: WechatPayConnector, wechat: tuple[SandboxProcess, Any]) -> None:
    sandbox, _ = wechat
    transaction_id = await paid_order(connector, sandbox, profit_sharing=True)
    await ps.add_receiver(connector, type="MERCHANT_ID", account="1900000110", relation_type="PARTNER")
    teacher = ps.ShareReceiver("MERCHANT_ID", "1900000110", 2000, "teacher share")
    stranger = ps.ShareReceiver("MERCHANT_ID", "1900000999", 100, "never bound")

    # Every split below is of this one order, leaving the unsplit rest frozen unless told otherwise.
    share = functools.partial(ps.create_order, connector, transaction_id=transaction_id, unfreeze_unsplit=False)

    order = await share(out_order_no="P1", receivers=[teacher, stranger])
    assert order.state == "FINISHED"
    assert [(r.account, r.result, r.fail_reason) for r in order.receivers] == [
        ("1900000110", "SUCCESS", None),
        ("1900000999", "CLOSED", "NO_RELATION"),
    ]
    again = await share(out_order_no="P1", receivers=[teacher, stranger])
    assert again.order_id == order.order_id  # idempotent by out_order_no
    assert await ps.unsplit_amount(connector, transaction_id) == 8000

    with pytest.raises(ChannelError) as over:  # 2000 + 1001 > 30 % of 10000
        await share(out_order_no="P2", receivers=[ps.ShareReceiver("MERCHANT_ID", "1900000110", 1001, "too much")])
    assert over.value.code == "INVALID_REQUEST"
    with pytest.raises(ChannelError) as reused:
        await share(out_order_no="P1", receivers=[teacher])
    assert reused.value.code == "INVALID_REQUEST"

    last = await share(
        out_order_no="P3",
        receivers=[ps.ShareReceiver("MERCHANT_ID", "1900000110", 1000, "rest")],
        unfreeze_unsplit=True,
    )
    assert last.receivers[0].result == "SUCCESS"
    assert await ps.unsplit_amount(connector, transaction_id) == 0
    queried = await ps.query_order(connector, out_order_no="P3", transaction_id=transaction_id)
    assert queried.order_id == last.order_id and queried.receivers[0].amount_minor == 1000


async def test_order_without_profit_sharing_is_refused(
    connector: WechatPayConnector, wechat: tuple[SandboxProcess, Any]
) -> None:
    sandbox, _ = wechat
    transaction_id = await paid_order(connector, sandbox, profit_sharing=False)
    with pytest.raises(ChannelError) as refused:
        await ps.create_order(
            connector,
            transaction_id=transaction_id,
            out_order_no="Q1",
            receivers=[ps.ShareReceiver("MERCHANT_ID", "1900000110", 100, "x")],
            unfreeze_unsplit=False,
        )
    assert refused.value.code == "INVALID_REQUEST"
    with pytest.raises(ChannelError) as bad_relation:
        await ps.add_receiver(connector, type="MERCHANT_ID", account="1900000110", relation_type="FRIEND")
    assert bad_relation.value.code == "PARAM_ERROR"


# ------------------------------------------------------------------------------------ Alipay royalty


@pytest.fixture(scope="module")
def alipay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxProcess, dict[str, Any]]]:
    env = {"JUHE_DATA_DIR": str(tmp_path_factory.mktemp("ps-alipay")), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    with SandboxProcess("sandboxes.alipay", port_env="JUHE_SANDBOX_ALIPAY_PORT", env=env) as sandbox:
        app = httpx.post(sandbox.base_url + "/control/apps", json={})
        app.raise_for_status()
        yield sandbox, app.json()


@pytest.fixture
async def alipay_connector(alipay: tuple[SandboxProcess, dict[str, Any]]) -> AsyncIterator[AlipayConnector]:
    sandbox, app = alipay
    config = AlipayConfig.model_validate(
        {
            "gateway_url": sandbox.base_url + "/gateway.do",
            "app_id": app["app_id"],
            "app_private_key_pem": app["app_private_key_pem"],
            "alipay_public_key_pem": app["alipay_public_key_pem"],
            "seller_id": app["seller_id"],
        }
    )
    connector = AlipayConnector(config)
    yield connector
    await connector.aclose()


async def paid_trade(connector: AlipayConnector, sandbox: SandboxProcess, *, profit_sharing: bool) -> str:
    return await paid(connector, sandbox, "/control/trades/{}/approve", profit_sharing=profit_sharing)


async def test_alipay_royalty_settle(alipay_connector: AlipayConnector, alipay: tuple[SandboxProcess, Any]) -> None:
    sandbox, _ = alipay
    trade_no = await paid_trade(alipay_connector, sandbox, profit_sharing=True)
    teacher = royalty.RoyaltyLine("2088101126765726", 3000, "teacher share")
    # Every settle of this trade below leaves the rest frozen unless told to finish.
    settle = functools.partial(royalty.settle, alipay_connector, trade_no=trade_no, finish=False)
    with pytest.raises(ChannelError) as unbound:
        await settle(out_request_no="S0", lines=[teacher])
    assert unbound.value.code == "ACQ.TRANS_IN_NOT_BIND"
    await royalty.bind_receivers(alipay_connector, out_request_no="B1", receivers=[("userId", "2088101126765726")])

    first = await settle(out_request_no="S1", lines=[teacher])
    again = await settle(out_request_no="S1", lines=[teacher])
    assert first.settle_no and again.settle_no == first.settle_no
    details = await royalty.settle_query(alipay_connector, out_request_no="S1", trade_no=trade_no)
    assert [(d.trans_in, d.amount_minor, d.state) for d in details] == [("2088101126765726", 3000, "SUCCESS")]
    with pytest.raises(ChannelError) as exceeded:  # 3000 settled, 7000 left
        await settle(out_request_no="S2", lines=[royalty.RoyaltyLine("2088101126765726", 7001, "too much")])
    assert exceeded.value.code == "ACQ.ROYALTY_AMOUNT_EXCEED"
    await settle(out_request_no="S3", lines=[royalty.RoyaltyLine("2088101126765726", 100, "last")], finish=True)
    with pytest.raises(ChannelError) as finished:
        await settle(out_request_no="S4", lines=[royalty.RoyaltyLine("2088101126765726", 100, "after finish")])
    assert finished.value.code == "ACQ.TRADE_SETTLE_ERROR"

    plain_trade = await paid_trade(alipay_connector, sandbox, profit_sharing=False)
    with pytest.raises(ChannelError) as frozen:
        await royalty.settle(alipay_connector, out_request_no="S5", trade_no=plain_trade, lines=[teacher], finish=False)
    assert frozen.value.code == "ACQ.TRADE_SETTLE_ERROR"
