"""Which mode a channel configuration may have, from the hosts it calls (domain/modes.py, docs/test-mode.md)."""

from __future__ import annotations

import pytest

from libs.common.errors import Problem
from services.cashier.connectors.registry import channel_endpoints
from services.cashier.domain.modes import config_mode, default_sandbox_hosts, is_sandbox

LOCAL = default_sandbox_hosts("test")


def test_loopback_is_a_sandbox_only_in_dev_and_test_and_the_public_sandboxes_everywhere() -> None:
    assert is_sandbox("http://127.0.0.1:8101/gateway.do", LOCAL)
    assert not is_sandbox("http://127.0.0.1:8101/gateway.do", default_sandbox_hosts("prod"))
    for env in ("dev", "test", "prod"):
        assert is_sandbox("https://openapi-sandbox.dl.alipaydev.com/gateway.do", default_sandbox_hosts(env))
        assert not is_sandbox("https://api.mch.weixin.qq.com", default_sandbox_hosts(env))
    assert is_sandbox("http://sandbox.internal:9000/x", {"sandbox.internal:9000"})
    assert not is_sandbox("http://sandbox.internal:9001/x", {"sandbox.internal:9000"})
    assert not is_sandbox("not a url", LOCAL)


def test_a_left_out_endpoint_is_the_connectors_production_host() -> None:
    assert channel_endpoints("wechatpay", {}) == ["https://api.mch.weixin.qq.com"]
    assert channel_endpoints("alipay", {"gateway_url": "http://127.0.0.1:1/gateway.do"}) == [
        "http://127.0.0.1:1/gateway.do"
    ]
    assert channel_endpoints("unionpay", {"file_base_url": "http://127.0.0.1:2"}) == [
        "https://gateway.95516.com",
        "http://127.0.0.1:2",
    ]
    assert channel_endpoints("wallet", {}) == []


def test_the_endpoints_decide_the_default_and_refuse_a_contradiction() -> None:
    sandbox, real = "http://127.0.0.1:1/x", "https://openapi.alipay.com/gateway.do"
    assert config_mode("alipay", [sandbox], None, LOCAL) == "test"
    assert config_mode("alipay", [real], None, LOCAL) == "live"
    assert config_mode("alipay", [sandbox], "test", LOCAL) == "test"
    assert config_mode("wallet", [], None, LOCAL) == "test"
    assert config_mode("wallet", [], "live", LOCAL) == "live"
    for endpoints, requested in (([real], "test"), ([sandbox], "live"), ([sandbox, real], None)):
        with pytest.raises(Problem) as refused:
            config_mode("unionpay", endpoints, requested, LOCAL)  # type: ignore[arg-type]
        assert refused.value.spec.code == "channel_mode_mismatch"
