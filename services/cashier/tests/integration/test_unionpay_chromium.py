"""A UnionPay web consume in a real browser (Debian's Chromium): the connector's auto-submit form, the
sandbox's card page filled in by hand, and the signed result the browser POSTs back to the merchant's
frontUrl, verified by the connector. The gateway-level browser journey comes with the checkout wiring.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import uuid_utils
from playwright.sync_api import expect, sync_playwright

from sandboxes.common.testing import CallbackReceiver, SandboxProcess
from services.cashier.connectors.base import PrepayRequest, TradeStatus
from services.cashier.connectors.unionpay import UnionPayConfig, UnionPayConnector
from services.cashier.domain.payments import PaymentScene

CONFIG_FIELDS = (
    "mer_id",
    "sign_pfx_base64",
    "sign_pfx_password",
    "root_cert_pem",
    "middle_cert_pem",
    "validate_cn_name",
)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    env = {"JUHE_DATA_DIR": str(tmp_path_factory.mktemp("unionpay-browser")), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    with SandboxProcess("sandboxes.unionpay", port_env="JUHE_SANDBOX_UNIONPAY_PORT", env=env) as process:
        yield process


def test_web_consume_in_chromium(sandbox: SandboxProcess, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed")
    merchant: dict[str, Any] = httpx.post(f"{sandbox.base_url}/control/merchants", json={}).json()
    config = UnionPayConfig(base_url=sandbox.base_url, **{k: merchant[k] for k in CONFIG_FIELDS})
    merchant_site = CallbackReceiver(reply_status=200, reply_body=b"<h1>Thank you</h1>")
    out_trade_no = uuid_utils.uuid7().hex

    async def prepay() -> dict[str, Any]:
        connector = UnionPayConnector(config)
        try:
            result = await connector.prepay(
                PrepayRequest(
                    out_trade_no=out_trade_no,
                    amount_minor=8888,
                    currency="CNY",
                    description="浏览器测试",
                    scene=PaymentScene.PAGE,
                    notify_url=merchant_site.url("notify"),
                    return_url=merchant_site.url("return"),
                )
            )
            return result.payer_action
        finally:
            await connector.aclose()

    async def query() -> TradeStatus:
        connector = UnionPayConnector(config)
        try:
            return (await connector.query(out_trade_no)).status
        finally:
            await connector.aclose()

    action = asyncio.run(prepay())
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.set_content(action["html"])  # the merchant's page: it submits itself to frontTransReq.do
                page.wait_for_url("**/pay/consume/**")
                expect(page.locator(".amount")).to_have_text("¥88.88")
                page.fill("#card_no", "6216261000000000018")
                page.fill("#expiry", "1229")
                page.fill("#cvn2", "123")
                page.fill("#sms_code", "111111")
                page.screenshot(path=str(tmp_path / "unionpay-card-page.png"))
                page.click("#pay")
                page.wait_for_url(merchant_site.url("return"))  # the result page POSTed itself to frontUrl
                expect(page.locator("h1")).to_have_text("Thank you")
            finally:
                browser.close()
        _headers, body = merchant_site.next("return")
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
        front = UnionPayConnector(config).parse_return(fields)  # signed by the sandbox, chain-checked
        assert front.status is TradeStatus.SUCCEEDED and front.out_trade_no == out_trade_no
        merchant_site.next("notify")  # the back notification arrived as well
        assert asyncio.run(query()) is TradeStatus.SUCCEEDED
    finally:
        merchant_site.close()
