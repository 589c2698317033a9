"""The README's "Coupons and campaigns" walkthrough (`sdk/python/examples/coupons.py`) run on the shared demo
platform, so the command and the output shown there cannot rot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.e2e.test_launcher import Launched

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # the first test may also wait for the launcher
EXAMPLE = Path(__file__).resolve().parents[2] / "sdk" / "python" / "examples" / "coupons.py"


def test_the_readme_coupon_walkthrough_issues_claims_uses_and_counts(
    demo_platform: Launched, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("coupons_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    at = ["--data-dir", str(demo_platform.data_dir), "--gateway", demo_platform.url("gateway")]

    shown = example.main([*at, "--wechatpay", demo_platform.url("wechatpay")])  # the README's command

    printed = capsys.readouterr().out  # what the README shows, ids aside
    assert "coupon cpn_" in printed and "stats {" in printed, printed
    assert shown["stock"]["funding_party"] == "merchant" and shown["stock"]["status"] == "running"
    assert shown["states"] == ["available", "locked", "used"]
    payment = shown["payment"]
    assert (payment["amount_minor"], payment["discount_minor"], payment["payable_minor"]) == (12_000, 1_000, 11_000)
    stats = shown["stats"]
    assert (stats["issued_count"], stats["claimed_count"], stats["redeemed_count"]) == (1, 1, 1)
    assert stats["cost"] == {"platform_minor": 0, "merchant_minor": 1_000, "total_minor": 1_000}
    assert stats["paid_volume_minor"] == 11_000
