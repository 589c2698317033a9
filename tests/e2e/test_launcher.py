"""`make run`'s launcher as a user runs it: everything ready, Ctrl-C stops all, a second start reuses the data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python"))
from juhe_sdk import Client

from libs.common.embedded import free_port, port_in_use
from libs.common.services import REPO_ROOT, SANDBOXES, SERVICES

pytestmark = pytest.mark.e2e
START_TIMEOUT_SECONDS = 120.0


def _start(data_dir: Path, ports: dict[str, int]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUHE_")}
    for spec in [*SERVICES.values(), *SANDBOXES.values()]:
        env[f"{spec.env_prefix}PORT"] = str(ports[spec.name])
    return subprocess.Popen(
        [sys.executable, "-m", "deploy.launcher", "run", "--data-dir", str(data_dir)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_running(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise AssertionError(
                f"launcher exited early ({proc.returncode}):\n" + "".join(lines[-40:]) + proc.stdout.read()
            )
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            return lines
    raise AssertionError("launcher not ready:\n" + "".join(lines[-40:]))


def _processes_using(data_dir: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(data_dir) in line and "pytest" not in line]


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    return output


def test_launcher_starts_everything_stops_cleanly_and_restarts_on_the_same_data(juhe_data_dir: Path) -> None:
    data_dir = juhe_data_dir
    ports = {name: free_port() for name in [*SERVICES, *SANDBOXES]}

    first = _start(data_dir, ports)
    try:
        lines = _wait_running(first)
        for name in SERVICES:
            ready = httpx.get(f"http://127.0.0.1:{ports[name]}/readyz", timeout=5)
            assert ready.status_code == 200, (name, ready.text)
        assert any("platform RSS" in line for line in lines)
        assert (data_dir / "logs" / "ledger.log").exists()
        opened = httpx.post(
            f"http://127.0.0.1:{ports['ledger']}/v1/accounts",
            json={"holder_id": "mch_kept", "currency": "CNY", "kind": "merchant_settled", "code": "2202"},
            timeout=10,
        )
        assert opened.status_code == 201
        account_id = opened.json()["id"]
        _pay_through_the_gateway_as_the_demo_merchant(data_dir, ports)
    finally:
        _stop(first)
    assert first.returncode == 0
    assert _processes_using(data_dir) == [], "a child survived Ctrl-C"
    assert not any(port_in_use(port) for port in ports.values())

    second = _start(data_dir, ports)
    try:
        _wait_running(second)
        kept = httpx.get(f"http://127.0.0.1:{ports['ledger']}/v1/accounts/{account_id}", timeout=5)
        assert kept.status_code == 200, "the second start must keep the first start's data"
    finally:
        _stop(second)
    assert _processes_using(data_dir) == []


def _pay_through_the_gateway_as_the_demo_merchant(data_dir: Path, ports: dict[str, int]) -> None:
    """The README's quickstart right after `make run`: the seeded merchant, key and sandbox channels work."""
    keys = json.loads((data_dir / "demo-keys.json").read_text())
    juhe = Client(f"http://127.0.0.1:{ports['gateway']}", key_id=keys["key_id"], secret=keys["secret"])
    payment = juhe.payments.create(
        merchant_order_no="demo-1", amount_minor=8888, currency="CNY", description="Parking", scene="native_qr"
    )
    assert payment["status"] == "processing", payment
    attempt = payment["attempts"][-1]
    channel = attempt["channel"]
    sandbox = f"http://127.0.0.1:{ports[channel]}"
    path = "trades" if channel == "alipay" else "orders"
    approved = httpx.post(f"{sandbox}/control/{path}/{attempt['out_trade_no']}/approve", json={}, timeout=10)
    assert approved.status_code == 200, approved.text
    deadline = time.monotonic() + 60
    while juhe.payments.retrieve(payment["id"])["status"] != "succeeded":
        assert time.monotonic() < deadline, "the demo payment never succeeded"
        time.sleep(0.3)

    # The demo user reaches only their own wallet through the gateway, and cannot mint money in it.
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    user = {"Authorization": f"Bearer {keys['user_token']}"}
    mine = httpx.get(f"{gateway}/v1/wallet/holders/{keys['user_id']}/my-wallet", headers=user, timeout=10)
    assert mine.status_code == 200, mine.text
    other = httpx.get(f"{gateway}/v1/wallet/holders/usr_someone_else/my-wallet", headers=user, timeout=10)
    assert other.status_code in (403, 404), other.text
    top_up = {"payment_id": "pay_self", "amount_minor": 1_000, "channel": "wechatpay", "channel_fee_minor": 0}
    minted = httpx.post(
        f"{gateway}/v1/wallet/holders/{keys['user_id']}/top-ups",
        json=top_up,
        headers={**user, "Idempotency-Key": "demo-self-top-up"},
        timeout=10,
    )
    assert minted.status_code == 403, minted.text

    # Settlement's client at the bank is the one the launcher gave settlement (payouts work out of the box).
    bank = json.loads((data_dir / "demo-bank.json").read_text())
    known = httpx.post(f"http://127.0.0.1:{ports['bank']}/control/clients", json={"client_id": bank["client_id"]})
    assert known.json()["secret"] == bank["secret"]


def test_launcher_killed_hard_leaves_nothing_running(juhe_data_dir: Path) -> None:
    data_dir = juhe_data_dir
    ports = {name: free_port() for name in [*SERVICES, *SANDBOXES]}
    proc = _start(data_dir, ports)
    try:
        _wait_running(proc)
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs in the launcher
        proc.wait()
    deadline = time.monotonic() + 30
    while _processes_using(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_using(data_dir) == [], "parent-death signals must stop every child"


def test_launcher_refuses_a_busy_port(juhe_data_dir: Path) -> None:
    ports = {name: free_port() for name in [*SERVICES, *SANDBOXES]}
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports["gateway"]))
        blocker.listen()
        proc = _start(juhe_data_dir, ports)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert f"gateway: port {ports['gateway']} is in use" in output
