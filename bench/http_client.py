"""Client CPU per HTTP request: httpx's default engine (httpcore, h11, anyio) against `KeepAliveTransport`
(libs/common/keepalive.py) under the same httpx client, the lean call without httpx (`JsonServiceClient` on
`KeepAliveClient`: the cashier's routing decision), and the gateway's `KeepAlivePool`.

    python -m bench.http_client [--requests 3000] [--concurrency 8] [--rounds 3]

One server process (uvicorn, uvloop and httptools, a bare Starlette route answering a small JSON `POST` the way a
service does) on a free port; this process runs each client in turn, `--rounds` times interleaved, on uvloop, and
reports the CPU this process spent per request (`time.process_time`: little affected by the machine's load) and
the server's (from /proc) for scale. docs/performance.md, "Sixth pass: transport".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
import uvloop

from bench.e2e_payments import cpu_seconds
from libs.common.embedded import free_port
from libs.common.http import JsonServiceClient, service_client
from libs.common.keepalive import KeepAlivePool

SERVER = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

async def route(request: Request) -> Response:
    await request.body()
    return Response(b'{"decisions":[{"method":"alipay","outcome":"routed"}]}', media_type="application/json")

app = Starlette(routes=[Route("/v1/route/methods", route, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""
BODY = {"merchant_id": "mch_demo", "amount_minor": 1234, "currency": "CNY", "methods": ["alipay", "wechatpay"]}


async def run(send: Callable[[], Awaitable[None]], requests: int, concurrency: int) -> float:
    """CPU ms of this process per request, `requests` sent by `concurrency` loops."""
    per_loop = requests // concurrency

    async def loop() -> None:
        for _ in range(per_loop):
            await send()

    for _ in range(20):  # warm: connections open, caches filled
        await send()
    started = time.process_time()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return (time.process_time() - started) * 1000 / (per_loop * concurrency)


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/", timeout=1)
            return server, url
        except httpx.TransportError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("the server did not start")


async def measure(args: argparse.Namespace, server: subprocess.Popen[bytes], url: str) -> None:
    payload = json.dumps(BODY).encode()
    identity = {"X-Juhe-Identity": "x" * 200}
    headers = {"Content-Type": "application/json", **identity}
    default = service_client(url, transport=httpx.AsyncHTTPTransport(verify=False))
    lean = service_client(url)
    lean_call = JsonServiceClient(url)
    pool = KeepAlivePool(url, connections_max=100, timeout_seconds=5, response_bytes_max=1 << 20)

    async def with_client(client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/route/methods", content=payload, headers=headers)
        response.json()

    async def with_lean_call() -> None:
        response = await lean_call.post("/v1/route/methods", json=BODY, headers=identity)
        response.json()

    async def with_pool() -> None:
        reply = await pool.request("POST", "/v1/route/methods", headers.items(), payload)
        json.loads(reply.body)

    clients: dict[str, Callable[[], Awaitable[None]]] = {
        "httpx, default transport (httpcore/h11/anyio)": lambda: with_client(default),
        "httpx, KeepAliveTransport": lambda: with_client(lean),
        "JsonServiceClient (KeepAliveClient, no httpx)": with_lean_call,
        "KeepAlivePool (the gateway's, no httpx)": with_pool,
    }
    figures: dict[str, list[float]] = {name: [] for name in clients}
    server_ms: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(args.rounds):
        for name, send in clients.items():
            before = cpu_seconds(server.pid)
            figures[name].append(await run(send, args.requests, args.concurrency))
            server_ms[name].append((cpu_seconds(server.pid) - before) * 1000 / args.requests)
    await default.aclose()
    await lean.aclose()
    await lean_call.aclose()
    await pool.close()
    load = os.getloadavg()[0]
    print(f"client CPU ms per request ({args.requests} requests, {args.concurrency} concurrent; load {load:.1f}):")
    for name, values in figures.items():
        shown = ", ".join(f"{v:.3f}" for v in values)
        print(f"  {name:<48} {shown}   (server {min(server_ms[name]):.2f})")
    print(json.dumps({name: round(min(values), 3) for name, values in figures.items()} | {"load_avg_1m": load}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    process, base_url = start_server()
    try:
        uvloop.run(measure(arguments, process, base_url))
    finally:
        process.terminate()
        process.wait(10)
