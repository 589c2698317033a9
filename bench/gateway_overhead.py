"""Gateway overhead: the same payment-create and payment-read calls, directly against the cashier and
through the gateway (signed with the SDK), in one run on one machine.

    python -m bench.gateway_overhead [--quick] [--concurrency 16] [--seconds 10] [--rounds 4]

Starts an embedded PostgreSQL and Tansu broker (or uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS), the
WeChat Pay sandbox, the cashier and the gateway as real processes; after a warm-up of both at full
concurrency, each round runs both paths for the same duration, in ABBA order (rounds alternate which goes
first) so drift in the machine's load hits both alike. Each worker loops "create a payment, read it back"
through the same SDK client. Direct calls carry the dev merchant header the cashier accepts in test mode;
gateway calls pass signature, nonce, rate-limit and idempotency checks (one PostgreSQL statement per
request, plus one to store a POST's response). Last line: {"direct_rps", "gateway_rps", "ratio", "direct_p99_ms",
"gateway_p99_ms", "load_avg_1m": [start, end]}. Goal: ratio ≥ 0.85.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from libs.common.embedded import (
    create_database,
    database_url,
    kafka_broker,
    postgres_server,
)
from libs.common.kafka import read_or_create_broker_epoch
from libs.common.migrations import upgrade
from libs.common.services import REPO_ROOT, SERVICES
from libs.common.testing.infra import ServiceProcess

sys.path.insert(0, str(REPO_ROOT / "sdk" / "python"))
from juhe_sdk import AsyncClient

MERCHANT_ID = "mch_demo"
WECHAT_MCHID = "1900000209"
WECHAT_APPID = "wxd678efh567hg6787"
LATENCY_SAMPLES_MAX = 1_000_000
WARMUP_SECONDS = 1.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def payment_body() -> dict[str, Any]:
    return {
        "merchant_order_no": f"ord_{uuid.uuid4().hex[:16]}",
        "amount_minor": 100,
        "currency": "CNY",
        "description": "Bench",
        "scene": "native_qr",
    }


class Stats:
    def __init__(self) -> None:
        self.latency_ms: dict[str, list[float]] = {"create": [], "read": []}
        self.errors = 0
        self.seconds = 0.0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latency_ms.values())

    def merge(self, other: Stats) -> None:
        for name, values in other.latency_ms.items():
            self.latency_ms[name].extend(values)
        self.errors += other.errors
        self.seconds += other.seconds

    def all_ms(self) -> list[float]:
        return self.latency_ms["create"] + self.latency_ms["read"]


async def run(
    base_url: str, keys: dict[str, Any], concurrency: int, seconds: float, stats: Stats, *, direct: bool
) -> None:
    """The same client for both paths: the SDK over one httpx pool sized to the concurrency.

    Direct calls also go through the SDK (they are signed too; the cashier ignores Authorization), so
    the client does identical work and the only difference measured is the gateway hop. Direct calls
    add the dev merchant header the cashier trusts in test mode, which the gateway sets itself.
    """
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"X-Juhe-Merchant-Id": MERCHANT_ID} if direct else None
    http = httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits, headers=headers)
    async with AsyncClient(
        base_url, key_id=keys["key_id"], secret=keys["secret"], http_client=http, max_retries=0
    ) as juhe:

        async def create() -> str:
            return str((await juhe.payments.create(**payment_body()))["id"])

        async def read(payment_id: str) -> None:
            await juhe.payments.retrieve(payment_id)

        await _load(create, read, concurrency, seconds, stats)


async def _load(create: Any, read: Any, concurrency: int, seconds: float, stats: Stats) -> None:
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline and stats.requests < LATENCY_SAMPLES_MAX:
            try:
                t0 = time.perf_counter()
                payment_id = await create()
                t1 = time.perf_counter()
                await read(payment_id)
                t2 = time.perf_counter()
                stats.latency_ms["create"].append((t1 - t0) * 1000)
                stats.latency_ms["read"].append((t2 - t1) * 1000)
            except Exception:
                stats.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    stats.seconds += time.perf_counter() - started


def start_stack(stack: ExitStack, root: Path) -> tuple[str, str, dict[str, Any]]:
    """Infrastructure, sandbox, cashier and gateway; returns (cashier URL, gateway URL, demo keys)."""
    from gateway.config import Settings as GatewaySettings
    from gateway.flows.seed import seed_demo
    from sandboxes.common.testing import SandboxProcess

    server_url = stack.enter_context(postgres_server(root))
    bootstrap = stack.enter_context(kafka_broker(root))
    asyncio.run(read_or_create_broker_epoch(bootstrap))
    suffix = uuid.uuid4().hex[:8]
    urls = {}
    for service in ("cashier", "gateway"):
        name = f"bench_{service}_{suffix}"
        asyncio.run(create_database(server_url, name))
        urls[service] = database_url(server_url, name)
        upgrade(SERVICES[service].migrations_dir, urls[service])

    sandbox_env = {"JUHE_DATA_DIR": str(root / "sandbox"), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    wechat = SandboxProcess("sandboxes.wechatpay", port_env="JUHE_SANDBOX_WECHATPAY_PORT", env=sandbox_env).start()
    stack.callback(wechat.stop)
    merchant = httpx.post(
        wechat.base_url + "/control/merchants",
        json={"mchid": WECHAT_MCHID, "appid": WECHAT_APPID, "generate_key_pair": True},
    ).json()

    logs = root / "logs"
    common = {"kafka_bootstrap_servers": bootstrap, "role": "api", "log_level": "WARNING"}
    cashier = ServiceProcess(SERVICES["cashier"], {**common, "database_url": urls["cashier"]}, log_dir=logs)
    cashier.start()
    stack.callback(cashier.stop)
    config = {
        "base_url": wechat.base_url,
        "mchid": WECHAT_MCHID,
        "appid": WECHAT_APPID,
        "merchant_private_key_pem": merchant["merchant_private_key_pem"],
        "merchant_cert_serial": merchant["merchant_cert_serial"],
        "platform_public_key_pem": merchant["platform_public_key_pem"],
        "platform_public_key_id": merchant["platform_public_key_id"],
        "apiv3_key": merchant["apiv3_key"],
    }
    httpx.put(f"{cashier.base_url}/v1/admin/merchants/{MERCHANT_ID}", json={}).raise_for_status()
    httpx.put(
        f"{cashier.base_url}/v1/admin/merchants/{MERCHANT_ID}/channels/wechatpay",
        json={"priority": 1, "config": config},
    ).raise_for_status()

    generous = 10_000_000
    gateway_values = {
        **common,
        "database_url": urls["gateway"],
        "cashier_url": cashier.base_url,
        "rate_limit_read_max": generous,
        "rate_limit_write_max": generous,
    }
    keys = seed_demo(urls["gateway"], root / "demo-keys.json", settings=GatewaySettings(env="test"))
    gateway = ServiceProcess(SERVICES["gateway"], gateway_values, log_dir=logs)
    gateway.start()
    stack.callback(gateway.stop)
    return cashier.base_url, gateway.base_url, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (under a minute)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="per mode per round")
    parser.add_argument("--rounds", type=int, default=4, help="ABBA-ordered rounds")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 3.0, 2
    load_start = os.getloadavg()[0]  # the machine may be shared: the figures mean little under load
    with tempfile.TemporaryDirectory(prefix="juhe-bench-gw-") as tmp, ExitStack() as stack:
        cashier_url, gateway_url, keys = start_stack(stack, Path(tmp))
        urls = {"direct": cashier_url, "gateway": gateway_url}
        totals = {"direct": Stats(), "gateway": Stats()}
        # Warm-up at the measured concurrency, so every pool (client, gateway → cashier, gateway's
        # guard connections, cashier's database pool) is as large as it will be when measured.
        for name in ("direct", "gateway"):
            asyncio.run(run(urls[name], keys, args.concurrency, WARMUP_SECONDS, Stats(), direct=name == "direct"))
        # ABBA: rounds alternate which path goes first, so drift in the machine's load hits both alike.
        for round_no in range(args.rounds):
            order = ("direct", "gateway") if round_no % 2 == 0 else ("gateway", "direct")
            figures = []
            for name in order:
                one = Stats()
                asyncio.run(run(urls[name], keys, args.concurrency, args.seconds, one, direct=name == "direct"))
                totals[name].merge(one)
                figures.append(f"{name} {one.requests / one.seconds:.1f} rps")
            print(f"round {round_no + 1}: " + ", ".join(figures), flush=True)
        direct, through = totals["direct"], totals["gateway"]
    rows = []
    for name, stats in (("direct", direct), ("gateway", through)):
        rps = stats.requests / stats.seconds if stats.seconds else 0.0
        rows.append((name, stats, rps))
    print(
        f"{'path':8} {'calls':>7} {'errors':>6} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8}  create p50/p99   read p50/p99"
    )
    for name, stats, rps in rows:
        c, r = stats.latency_ms["create"], stats.latency_ms["read"]
        print(
            f"{name:8} {stats.requests:7d} {stats.errors:6d} {rps:8.1f} {percentile(stats.all_ms(), 0.5):8.2f} "
            f"{percentile(stats.all_ms(), 0.99):8.2f}  {percentile(c, 0.5):6.2f}/{percentile(c, 0.99):<8.2f} "
            f"{percentile(r, 0.5):6.2f}/{percentile(r, 0.99):.2f}"
        )
    direct_rps, gateway_rps = rows[0][2], rows[1][2]
    ratio = gateway_rps / direct_rps if direct_rps else 0.0
    load_end = os.getloadavg()[0]
    print(f"throughput through the gateway = {ratio:.0%} of direct (goal ≥ 85%)")
    print(f"load average (1 min) {load_start:.2f} at start, {load_end:.2f} at end, {os.cpu_count()} CPUs")
    print(
        json.dumps(
            {
                "direct_rps": round(direct_rps, 1),
                "gateway_rps": round(gateway_rps, 1),
                "ratio": round(ratio, 3),
                "direct_p99_ms": round(percentile(direct.all_ms(), 0.99), 2),
                "gateway_p99_ms": round(percentile(through.all_ms(), 0.99), 2),
                "load_avg_1m": [round(load_start, 2), round(load_end, 2)],
            }
        )
    )


if __name__ == "__main__":
    main()
