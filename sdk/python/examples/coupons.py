"""Coupons and campaigns end to end, through the gateway only (the README's "Coupons and campaigns").

    python sdk/python/examples/coupons.py [--data-dir .juhe] [--gateway URL] [--wechatpay URL]

Against a running platform (`make run`: its keys are in `.juhe/demo-keys.json`):

1. the demo merchant (its signed test key) creates a campaign and a **merchant-funded** stock 满100减10
   (10.00 off an order of at least 100.00) and starts it;
2. the demo user (its bearer token) claims a coupon of it;
3. the merchant creates a 120.00 payment naming the coupon: marketing locks the coupon and the channel is
   asked for 110.00; the payer approves in the WeChat Pay sandbox (a person would scan the QR);
4. it prints the coupon's states along the way (available → locked → used) and the campaign's stats
   (issued, claimed, redeemed, cost by funding party, payment volume).

The only call outside the gateway is the payer's approval at the sandbox, which stands for the payer's phone.
Each run makes its own campaign, so it can be run again. `tests/e2e/test_readme_coupons.py` runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # sdk/python: juhe_sdk without installing it
from juhe_sdk import Client

ORDER_MINOR = 12_000  # 120.00 yuan in fen
AMOUNT_OFF_MINOR, THRESHOLD_MINOR = 1_000, 10_000  # 满100减10


def _until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll until `check` answers something truthy (the platform's consumers work asynchronously), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.2)


def walkthrough(
    gateway: str, wechatpay: str, keys: dict[str, str], say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the walkthrough and answer what it printed as data: {"states": [...], "payment": ..., "stats": ...}."""
    merchant = Client(gateway, key_id=keys["key_id"], secret=keys["secret"])
    user = Client(gateway, token=keys["user_token"])
    run = uuid.uuid4().hex[:8]

    campaign = merchant.request("POST", "/v1/marketing/campaigns", json={"name": f"Spring {run}"})
    stock = merchant.request(
        "POST",
        "/v1/marketing/stocks",
        json={
            "campaign_id": campaign["campaign_id"],
            "name": "满100减10",
            "discount_kind": "fixed",
            "amount_off_minor": AMOUNT_OFF_MINOR,
            "threshold_minor": THRESHOLD_MINOR,
            "valid_days_after_claim": 30,
            "funding_party": "merchant",  # the merchant pays for its discount (contra-revenue, no ledger line)
            "budget_count": 100,
            "per_user_limit": 1,
        },
    )
    stock = merchant.request("POST", f"/v1/marketing/stocks/{stock['stock_id']}/start")
    say(
        f"campaign {campaign['campaign_id']}: stock {stock['stock_id']} {stock['name']} {stock['status']}, "
        f"funded by the {stock['funding_party']}, budget {stock['budget_count']} coupons"
    )

    claimed = user.request(
        "POST", "/v1/marketing/me/claims", json={"stock_id": stock["stock_id"], "request_id": f"claim-{run}"}
    )
    coupon_id = claimed["coupon_id"]
    states: list[str] = []

    def state() -> str:
        status = str(user.request("GET", f"/v1/marketing/me/coupons/{coupon_id}")["status"])
        if not states or states[-1] != status:
            states.append(status)
            say(f"coupon {coupon_id}: {status}")
        return status

    state()
    payment = merchant.payments.create(
        merchant_order_no=f"coupons-{run}",
        amount_minor=ORDER_MINOR,
        currency="CNY",
        description="Spring order",
        scene="native_qr",
        preferred_channels=["wechatpay"],
        payer={"user_id": keys["user_id"]},
        coupon_id=coupon_id,
    )
    say(
        f"payment {payment['id']}: amount {payment['amount_minor']}, discount {payment['discount_minor']}, "
        f"asked of the channel {payment['payable_minor']} ({payment['status']})"
    )
    state()
    out_trade_no = payment["attempts"][-1]["out_trade_no"]  # the payer approves in the sandbox
    httpx.post(f"{wechatpay}/control/orders/{out_trade_no}/approve", json={}, timeout=10).raise_for_status()
    paid = _until(
        lambda: (p := merchant.payments.retrieve(payment["id"]))["status"] == "succeeded" and p, "the payment"
    )
    say(f"payment {paid['id']}: {paid['status']}")
    _until(lambda: state() == "used", "the coupon to be used")

    stats = _until(
        lambda: (
            (s := merchant.request("GET", f"/v1/marketing/campaigns/{campaign['campaign_id']}/stats"))["redeemed_count"]
            and s
        ),
        "the campaign's stats to count the redemption",
    )
    say("stats " + json.dumps({k: v for k, v in stats.items() if k != "campaign_id"}, ensure_ascii=False))
    return {"campaign": campaign, "stock": stock, "states": states, "payment": paid, "stats": stats}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The command: the platform's addresses from the arguments, its keys from the data dir."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=Path(".juhe"), help="where demo-keys.json is")
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    parser.add_argument("--wechatpay", default="http://127.0.0.1:8100", help="the WeChat Pay sandbox")
    args = parser.parse_args(argv)
    keys = json.loads((args.data_dir / "demo-keys.json").read_text())
    return walkthrough(args.gateway, args.wechatpay, keys)


if __name__ == "__main__":
    main()
