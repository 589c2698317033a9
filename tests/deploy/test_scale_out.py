"""Scale-out on this machine: two API and two worker processes of every service behind balancers, a payment and
refund load, and one API and one worker replica of each service SIGKILLed in the middle of it.

`python -m deploy.launcher run --replicas 2`: each service's usual port is a TCP balancer over its two API
processes (round-robin, failover on connect errors: the local stand-in for a Kubernetes Service), the two
workers share the service's consumer groups and outbox shards. The merchant pays with 付款码 codes of the
WeChat Pay sandbox (charged during the create call) and refunds part of the first payments; each request has
its own Idempotency-Key and is retried with it on a connection failure or a retryable answer, as a merchant's
client does. After the load: every request has exactly one effect (one payment per order, one refund per
refund request, one ledger transfer for each), the ledger verifies, and settlement's consistency check with
the ledger is ok.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.common.embedded import free_port
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.services import SANDBOXES, SERVICES
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET
from services.ledger.verify import verify
from tests.e2e import test_launcher
from tests.e2e.test_launcher import Launched, eventually
from tests.e2e.test_payment_code_gateway import _route_barcode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python"))
from juhe_sdk import APIConnectionError, APIError, Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]
PAYMENTS = 60
REFUNDS = 20
AMOUNT_MINOR = 880
REFUND_MINOR = 300
CONCURRENCY = 6
KILL_AFTER_PAYMENTS = 15  # the kills land in the middle of the load
RETRY_SECONDS = 120.0  # a bound per request, not a wait: restarts on a loaded 2-core box take a while
RETRYABLE_CODES = frozenset({"idempotency_key_in_progress"})


class Scaled(Launched):
    """`Launched`, but a launcher that never got ready is killed (its children follow by parent-death signal)
    instead of being left running when the start bound fails the test."""

    def __init__(self, data_dir: Path, ports: dict[str, int], env: dict[str, str]) -> None:
        try:
            super().__init__(data_dir, ports, env)
        except BaseException:
            proc = getattr(self, "proc", None)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
            raise


def with_retries(call: Callable[[], Any]) -> tuple[Any, int]:
    """`call()` until it answers, retried (same Idempotency-Key: `call` closes over it) on connection failures
    and retryable answers, as a merchant's client would; (result, retries)."""
    deadline = time.monotonic() + RETRY_SECONDS
    retries = 0
    while True:
        try:
            return call(), retries
        except APIConnectionError:
            pass
        except APIError as exc:
            if exc.status not in (502, 503, 504) and exc.code not in RETRYABLE_CODES:
                raise
        retries += 1
        assert time.monotonic() < deadline, "a request was never accepted within its retries"
        time.sleep(min(0.2 * retries, 2.0))


class Load:
    """The merchant's side: payments, then a refund of each of the first REFUNDS, from a few threads."""

    def __init__(self, platform: Launched, merchant: Client, run: str) -> None:
        self.platform = platform
        self.merchant = merchant
        self.run = run
        self.accepted = 0
        self.retries = 0
        self.lock = threading.Lock()
        self.payments: dict[int, str] = {}
        self.refunds: dict[int, str] = {}

    def code(self) -> str:
        shown = httpx.post(self.platform.url("wechatpay") + "/control/payer-codes", json={}, timeout=10)
        assert shown.status_code == 200, shown.text
        return str(shown.json()["auth_code"])

    def one(self, i: int) -> None:
        auth_code = self.code()  # the payer shows it now: a code is valid for a minute
        fields = {
            "merchant_order_no": f"{self.run}-{i}",
            "amount_minor": AMOUNT_MINOR,
            "currency": "CNY",
            "description": "Parking",
            "scene": "payment_code",
            "auth_code": auth_code,
        }
        key = f"{self.run}-pay-{i}"
        paid, retries = with_retries(lambda: self.merchant.payments.create(idempotency_key=key, **fields))
        self._count(retries)
        self.payments[i] = paid["id"]
        if i >= REFUNDS:
            return
        self.reaches(f"/v1/payments/{paid['id']}", "succeeded")
        key = f"{self.run}-refund-{i}"
        refund, retries = with_retries(
            lambda: self.merchant.payments.refund(paid["id"], idempotency_key=key, amount_minor=REFUND_MINOR)
        )
        self._count(retries)
        self.refunds[i] = refund["id"]

    def _count(self, retries: int) -> None:
        with self.lock:
            self.accepted += 1
            self.retries += retries

    def reaches(self, path: str, status: str) -> None:
        def check() -> bool:
            answer, _ = with_retries(lambda: self.merchant.request_raw("GET", path))
            assert answer.data["status"] not in ("failed", "closed"), answer.data
            return bool(answer.data["status"] == status)

        eventually(check, f"{path} to be {status}", 120)


def kill_one_replica_of_each(platform: Launched) -> list[str]:
    """SIGKILL `<service>-api-1` and `<service>-worker-1` of every service (the launcher restarts them)."""
    pids = json.loads((platform.data_dir / "children.json").read_text())
    killed = []
    for name in SERVICES:
        for role in ("api", "worker"):
            child = f"{name}-{role}-1"
            os.kill(pids[child], signal.SIGKILL)
            killed.append(child)
    return killed


def test_two_replicas_of_every_service_lose_nothing_when_one_of_each_is_killed(
    juhe_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2.5 times the processes of `make run` start on the same two cores: three times the launcher test's bound.
    monkeypatch.setattr(test_launcher, "START_TIMEOUT_SECONDS", 3 * test_launcher.START_TIMEOUT_SECONDS)
    ports = {name: free_port() for name in [*SERVICES, *SANDBOXES]}
    started = time.monotonic()
    env = {"JUHE_LAUNCHER_REPLICAS": "2", "JUHE_SANDBOX_WECHATPAY_REFUND_AUTO_SECONDS": "1"}  # refunds end at once
    platform = Scaled(juhe_data_dir, ports, env)
    try:
        ready_seconds = time.monotonic() - started
        pids = json.loads((juhe_data_dir / "children.json").read_text())
        assert {f"{n}-{r}-{i}" for n in SERVICES for r in ("api", "worker") for i in (1, 2)} <= set(pids)
        keys = json.loads((juhe_data_dir / "demo-keys.json").read_text())
        _route_barcode(platform.url("routing"), keys["merchant_id"])
        merchant = Client(platform.url("gateway"), key_id=keys["key_id"], secret=keys["secret"], max_retries=0)
        load = Load(platform, merchant, f"so-{uuid.uuid4().hex[:8]}")

        load_started = time.monotonic()
        killed: list[str] = []
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            futures = [pool.submit(load.one, i) for i in range(PAYMENTS)]
            eventually(lambda: load.accepted >= KILL_AFTER_PAYMENTS or all(f.done() for f in futures), "load", 300)
            killed = kill_one_replica_of_each(platform)
            for future in futures:
                future.result()  # every request accepted (after retries with its own key)
        load_seconds = time.monotonic() - load_started
        assert len(killed) == 2 * len(SERVICES) and load.accepted == PAYMENTS + REFUNDS

        for refund_id in load.refunds.values():
            load.reaches(f"/v1/refunds/{refund_id}", "succeeded")
        check_money(platform, load, keys)
        print(
            json.dumps(
                {
                    "ready_seconds": round(ready_seconds, 1),
                    "load_seconds": round(load_seconds, 1),
                    "requests": load.accepted,
                    "client_retries": load.retries,
                    "killed": len(killed),
                    "restarts_seen": platform.said("exited with -9"),
                }
            )
        )
    finally:
        platform.stop()


def check_money(platform: Launched, load: Load, keys: dict[str, Any]) -> None:
    cashier_db, ledger_db = SERVICES["cashier"].database, SERVICES["ledger"].database
    assert cashier_db and ledger_db
    payments = platform.query(
        cashier_db,
        f"SELECT id, status, merchant_order_no FROM payments WHERE merchant_order_no LIKE '{load.run}-%'",
    )
    assert len(payments) == PAYMENTS  # one payment per order: no retry made a second one
    assert {p["id"] for p in payments} == set(load.payments.values())
    assert {p["status"] for p in payments} == {"succeeded"}
    ids = "','".join(load.payments.values())
    refunds = platform.query(cashier_db, f"SELECT id, status FROM refunds WHERE payment_id IN ('{ids}')")
    assert len(refunds) == REFUNDS and {r["id"] for r in refunds} == set(load.refunds.values())
    assert {r["status"] for r in refunds} == {"succeeded"}

    wanted = {f"{pid}:succeeded" for pid in load.payments.values()} | {
        f"{rid}:succeeded" for rid in load.refunds.values()
    }
    keys_in = "','".join(wanted)

    def posted() -> list[dict[str, Any]] | None:
        rows = platform.query(
            ledger_db, f"SELECT idempotency_key, status FROM transfers WHERE idempotency_key IN ('{keys_in}')"
        )
        return rows if len(rows) >= len(wanted) else None

    rows = eventually(posted, "the ledger's transfer for every payment and refund", 120)
    assert sorted(r["idempotency_key"] for r in rows) == sorted(wanted)  # exactly one each

    port = json.loads((platform.data_dir / "ports.json").read_text())["postgres"]
    violations = asyncio.run(verify(f"postgresql://postgres@127.0.0.1:{port}/{ledger_db}"))
    assert not any(violations.values()), violations

    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="scale-out", platform="plt_demo")
    headers = {IDENTITY_HEADER: token, "X-Juhe-Actor": "ops@scale-out"}

    def consistent() -> dict[str, Any] | None:
        answer = httpx.post(f"{platform.url('settlement')}/v1/settlement/consistency/runs", headers=headers, timeout=30)
        assert answer.status_code in (200, 503), answer.text
        result: dict[str, Any] = answer.json()
        if answer.status_code != 200 or result["unconfirmed"]:
            return None  # events still in flight (or the ledger's replica restarting): ask again
        return result

    result = eventually(consistent, "settlement's consistency check", 120)
    assert result["ok"] is True and result["mismatches"] == [], result
