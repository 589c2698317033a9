"""Money stays right while processes die (issue 13): a bounded payment + refund load through the gateway on
the real launcher while the cashier, the ledger, settlement, the broker and PostgreSQL are SIGKILLed one at
a time (the launcher restarts each), then, once the pipeline has drained, the final state is checked:

- every succeeded payment and refund is posted exactly once in the ledger (transfers by reference);
- settlement agrees with the ledger per merchant (settlement's consistency check, run on demand);
- the merchant's webhook receiver got one event per final state (redeliveries of the same event allowed);
- no service database holds an unsent outbox row or a dead letter;
- `python -m services.ledger.verify` finds the ledger's invariants intact.

The clients behave as a real merchant's would: a request that fails with a connection error, a 5xx, a 429 or
`idempotency_key_in_progress` is sent again with the same idempotency key until it gets a final answer. Only
final states are asserted; no timing is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python"))
from juhe_sdk import APIConnectionError, APIError, Client

from libs.common.embedded import free_port
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.services import REPO_ROOT, SANDBOXES, SERVICES
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET
from services.ledger.events.postings import refund_fee_share
from tests.e2e.test_launcher import Launched, eventually, launched

# ~3 minutes on a loaded 2-core machine; the bound leaves room for the drain waits to fail with their
# own message (instead of pytest-timeout's) when the pipeline does not catch up.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PAYMENTS = 150
REFUND_EVERY = 3  # every third payment gets a partial refund: 50 refunds
CLIENTS = 4
KILLS = ("cashier", "ledger", "settlement", "broker", "postgres")
FINAL_ANSWER_SECONDS = 180.0  # one request, retried, until it gets a final answer
BACK_SECONDS = 180.0  # a killed component is back and every service ready again
DRAIN_SECONDS = 120.0  # events, postings and webhooks caught up after the load
# Dev settings for the run: WeChat Pay refunds succeed 1 s after they are asked for (default 60 s), and a
# webhook interrupted by a kill is retried after ~0.75 s instead of 15 s (same schedule, scaled).
RUN_ENV = {"JUHE_SANDBOX_WECHATPAY_REFUND_AUTO_SECONDS": "1", "JUHE_CASHIER_WEBHOOK_RETRY_SCALE": "0.05"}
FINAL_PAYMENT = {"succeeded", "failed", "closed"}
FINAL_REFUND = {"succeeded", "failed"}


# ------------------------------------------------------------------------------------- webhook receiver
class Receiver:
    """The merchant's webhook endpoint on a free local port: records every delivery it answers 200 to.

    `answer` is the body of that 200 and `parse` what is recorded of each body: the defaults are Juhe's webhooks
    (JSON, an empty answer); bench.e2e_payments's baseline merchant takes the channel's notifications with
    `answer=b"success"` (Alipay's acknowledgement) and `parse=bytes`."""

    def __init__(self, *, answer: bytes = b"", parse: Callable[[bytes], Any] = json.loads) -> None:
        self.deliveries: list[Any] = []
        lock = threading.Lock()
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            # Keeps connections alive as a merchant's web server does, so the cashier's kept-alive connections to
            # webhook targets are exercised here and in bench.e2e_payments (docs/performance.md, fifth pass).
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append(parse(body))
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def events(self) -> dict[tuple[str, str], set[str]]:
        """{(event type, object id): {event ids}} of everything received so far."""
        found: dict[tuple[str, str], set[str]] = {}
        for delivery in list(self.deliveries):
            found.setdefault((delivery["type"], delivery["data"]["id"]), set()).add(delivery["id"])
        return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hooks = Receiver()
    hooks.thread.start()
    try:
        yield hooks
    finally:
        hooks.server.shutdown()
        hooks.server.server_close()


# ------------------------------------------------------------------------------------- the merchant's load
@dataclass
class Load:
    run: Launched
    keys: dict[str, Any]
    payments: dict[int, dict[str, Any]] = field(default_factory=dict)  # final views
    refunds: dict[int, dict[str, Any]] = field(default_factory=dict)
    transient: Counter[str] = field(default_factory=Counter)  # answers that were retried, by kind
    # 5xx answers that are not a retryable outage code (an outage must be a 503 with one): reported, since
    # the test asserts final states only.
    unexpected: list[str] = field(default_factory=list)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> Client:
        return Client(self.run.url("gateway"), key_id=self.keys["key_id"], secret=self.keys["secret"], max_retries=0)

    def final(self, call: Callable[[], Any], what: str) -> Any:
        """`call` again (same idempotency key inside it) until a final answer: what a merchant does."""
        deadline = time.monotonic() + FINAL_ANSWER_SECONDS
        delay = 0.2
        while True:
            try:
                return call()
            except APIConnectionError:
                kind = "connection"
            except APIError as exc:
                retryable = exc.status >= 500 or exc.status == 429 or exc.code == "idempotency_key_in_progress"
                if not retryable:
                    raise AssertionError(f"{what}: {exc.status} {exc.code}: {exc}") from exc
                kind = f"{exc.status} {exc.code}"
                if exc.status >= 500 and exc.status != 503:
                    with self.lock:
                        self.unexpected.append(f"{what}: {exc} (trace {exc.trace_id})"[:400])
            with self.lock:
                self.transient[kind] += 1
            assert time.monotonic() < deadline, f"{what}: no final answer in {FINAL_ANSWER_SECONDS:.0f}s"
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def until(self, read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], what: str) -> Any:
        deadline = time.monotonic() + FINAL_ANSWER_SECONDS
        while not done(view := self.final(read, what)):
            assert time.monotonic() < deadline, f"{what}: still {view.get('status')}"
            time.sleep(0.3)
        return view

    def approve(self, payment: dict[str, Any]) -> None:
        """The payer pays at the channel sandbox (sandboxes are never killed)."""
        attempt = payment["attempts"][-1]
        path = "trades" if attempt["channel"] == "alipay" else "orders"
        url = f"{self.run.url(attempt['channel'])}/control/{path}/{attempt['out_trade_no']}/approve"
        answer = httpx.post(url, json={}, timeout=30)
        assert answer.status_code == 200, f"{payment['id']}: sandbox approve: {answer.text}"

    def one(self, juhe: Client, i: int) -> None:
        amount = 1_000 + 37 * i
        body = {
            "merchant_order_no": f"F-{i}",
            "amount_minor": amount,
            "currency": "CNY",
            "description": "fault test",
            "scene": "native_qr",
        }
        # A payment created while a component died may still be on its way to the channel: the cashier
        # re-drives it, and a retry of the create (same key) answers it payable.
        payable = self.until(
            lambda: juhe.payments.create(idempotency_key=f"fault-pay-{i}", **body),
            lambda p: p["status"] != "created" and bool(p.get("attempts")),
            f"payment {i} payable",
        )
        pid = payable["id"]
        if payable["status"] == "processing":
            self.approve(payable)
        paid = self.until(lambda: juhe.payments.retrieve(pid), lambda p: p["status"] in FINAL_PAYMENT, f"pay {i}")
        with self.lock:
            self.payments[i] = paid
        if i % REFUND_EVERY == 0 and paid["status"] == "succeeded":
            refund_body = {"amount_minor": amount // 3, "reason": "fault test"}
            refund = self.final(
                lambda: juhe.payments.refund(pid, idempotency_key=f"fault-refund-{i}", **refund_body), f"refund {i}"
            )
            settled = self.until(
                lambda: juhe.refunds.retrieve(refund["id"]), lambda r: r["status"] in FINAL_REFUND, f"refund {i}"
            )
            with self.lock:
                self.refunds[i] = settled
        with self.lock:
            self.done += 1

    def drive(self) -> None:
        """PAYMENTS payments (and their refunds) over CLIENTS concurrent merchants' connections."""
        todo = iter(range(PAYMENTS))
        pick = threading.Lock()

        def worker() -> None:
            with self.client() as juhe:
                while True:
                    with pick:
                        i = next(todo, None)
                    if i is None:
                        return
                    self.one(juhe, i)

        with ThreadPoolExecutor(CLIENTS) as pool:
            for future in [pool.submit(worker) for _ in range(CLIENTS)]:
                future.result()


# ------------------------------------------------------------------------------------- the faults
def _broker_pid(run: Launched) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
            except (OSError, IndexError):
                continue
            if int(fields[1]) == run.proc.pid and fields[0] != "Z" and argv0.endswith(b"/tansu"):
                return int(entry.name)
    return None


def kill_and_wait_back(run: Launched, target: str) -> None:
    """SIGKILL one component; return once the launcher has it running again and every service is ready."""
    if target == "postgres":
        pid, current = run.postmaster_pid(), run.postmaster_pid
        back_before = run.said("PostgreSQL is back")
    elif target == "broker":
        pid, current = _broker_pid(run), lambda: _broker_pid(run)
    else:
        pid, current = run.child_pids().get(target), lambda: run.child_pids().get(target)
    assert pid is not None, f"no running {target}"
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: current() not in (None, pid), f"{target} restarted by the launcher", BACK_SECONDS)
    if target == "postgres":
        eventually(lambda: run.said("PostgreSQL is back") > back_before, "PostgreSQL recovered", BACK_SECONDS)
    eventually(lambda: not run.not_ready(), f"every service ready after the {target} kill", BACK_SECONDS)


class Faults:
    """One kill at a time, in a thread beside the load, spread over it by progress (kills still due when
    the load ends follow at once). `killed` names each target with the payments done when it died."""

    def __init__(self, run: Launched, load: Load) -> None:
        self.run, self.load = run, load
        self.killed: list[tuple[str, int]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._schedule, daemon=True)

    def _schedule(self) -> None:
        try:
            for n, target in enumerate(KILLS, start=1):
                threshold = n * PAYMENTS // (len(KILLS) + 2)
                deadline = time.monotonic() + FINAL_ANSWER_SECONDS
                while self.load.done < threshold and time.monotonic() < deadline:
                    time.sleep(0.2)
                self.killed.append((target, self.load.done))
                kill_and_wait_back(self.run, target)
        except BaseException as exc:  # re-raised in the test's thread by `join`
            self.error = exc

    def join(self) -> None:
        self.thread.join(timeout=len(KILLS) * (BACK_SECONDS + FINAL_ANSWER_SECONDS))
        if self.error is not None:
            raise self.error
        assert [target for target, _ in self.killed] == list(KILLS), f"faults done: {self.killed}"


# ------------------------------------------------------------------------------------- the checks
def platform_headers() -> dict[str, str]:
    """The demo platform's operator, as the launcher's own seeding calls the services (dev secret)."""
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="fault-test", platform="plt_demo")
    return {IDENTITY_HEADER: token}


def _database_url(run: Launched, service: str) -> str:
    port = json.loads((run.data_dir / "ports.json").read_text())["postgres"]
    return f"postgresql://postgres@127.0.0.1:{port}/{SERVICES[service].database}"


def fetch(run: Launched, service: str, sql: str) -> list[dict[str, Any]]:
    database = SERVICES[service].database
    assert database
    return run.query(database, sql)


def ledger_postings(run: Launched) -> Counter[str]:
    """How many cashier-sourced transfers the ledger holds per reference (payment or refund id)."""
    rows = fetch(run, "ledger", "SELECT reference, count(*) AS n FROM transfers WHERE source = 'cashier' GROUP BY 1")
    return Counter({r["reference"]: int(r["n"]) for r in rows})


def undelivered(run: Launched) -> dict[str, tuple[int, int]]:
    """{service: (unsent outbox rows, dead letters)} where either is not zero."""
    found = {}
    for name in SERVICES:
        [row] = fetch(
            run,
            name,
            "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS unsent,"
            " CASE WHEN to_regclass('inbox_dead_letter') IS NULL THEN 0"
            " ELSE (SELECT count(*) FROM inbox_dead_letter) END AS dead",
        )
        if row["unsent"] or row["dead"]:
            found[name] = (int(row["unsent"]), int(row["dead"]))
    return found


def settlement_check(run: Launched) -> dict[str, Any]:
    """Settlement's own settlement ↔ ledger check, run now (platform identity, straight to settlement)."""
    answer = httpx.post(
        f"{run.url('settlement')}/v1/settlement/consistency/runs", headers=platform_headers(), timeout=60
    )
    assert answer.status_code in (200, 503), answer.text
    return dict(answer.json()) if answer.status_code == 200 else {"ok": None}


def never_delivered_to_settlement(run: Launched, subjects: set[str]) -> set[str]:
    """Final events of `subjects` the cashier published that settlement's consumer never received (no inbox
    row): lost in transport, as opposed to received and mis-applied."""
    published = fetch(
        run,
        "cashier",
        "SELECT event_id, key FROM outbox WHERE event_type IN ('payment.succeeded', 'refund.succeeded')"
        " AND published_at IS NOT NULL",
    )
    received = {r["event_id"] for r in fetch(run, "settlement", "SELECT event_id FROM inbox")}
    return {r["event_id"] for r in published if r["key"] in subjects and r["event_id"] not in received}


def cashier_refunds(run: Launched) -> list[dict[str, Any]]:
    return fetch(run, "cashier", "SELECT id, payment_id, amount_minor, status FROM refunds")


def settlement_records(run: Launched) -> dict[str, Any]:
    """What settlement recorded (for a failure message): payments and refunds by status, Σ refunded."""
    payments = fetch(
        run, "settlement", "SELECT status, count(*) AS n, sum(refunded_minor) AS r FROM payment_records GROUP BY 1"
    )
    refunds = fetch(
        run, "settlement", "SELECT status, count(*) AS n, sum(amount_minor) AS a FROM refund_records GROUP BY 1"
    )
    return {"payments": [dict(r) for r in payments], "refunds": [dict(r) for r in refunds]}


def merchant_pending_net(run: Launched, merchant_id: str) -> int:
    rows = fetch(
        run,
        "ledger",
        "SELECT coalesce(sum(credits_posted - debits_posted), 0) AS net FROM accounts"
        f" WHERE kind = 'merchant_pending' AND holder_id = '{merchant_id}'",
    )
    return int(rows[0]["net"])


def verify_ledger(run: Launched) -> subprocess.CompletedProcess[str]:
    url = _database_url(run, "ledger").replace("postgresql://", "postgresql+asyncpg://", 1)
    return subprocess.run(
        [sys.executable, "-m", "services.ledger.verify", "--database-url", url],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ------------------------------------------------------------------------------------- the test
def test_money_stays_right_while_components_are_killed(juhe_data_dir: Path, receiver: Receiver) -> None:
    ports = {name: free_port() for name in [*SERVICES, *SANDBOXES]}
    with launched(juhe_data_dir, ports, env=RUN_ENV) as run:
        keys = json.loads((juhe_data_dir / "demo-keys.json").read_text())
        notify = httpx.put(
            f"{run.url('cashier')}/v1/admin/merchants/{keys['merchant_id']}",
            json={"notify_url": receiver.url},
            headers=platform_headers(),
            timeout=10,
        )
        assert notify.status_code == 200, notify.text
        services_before = run.child_pids()

        load = Load(run, keys)
        faults = Faults(run, load)
        faults.thread.start()
        load.drive()
        faults.join()

        # ---- every request got its final answer
        assert len(load.payments) == PAYMENTS
        statuses = Counter(p["status"] for p in load.payments.values())
        assert statuses == {"succeeded": PAYMENTS}, statuses
        assert len(load.refunds) == PAYMENTS // REFUND_EVERY + (PAYMENTS % REFUND_EVERY > 0)
        refund_statuses = Counter(r["status"] for r in load.refunds.values())
        assert refund_statuses == {"succeeded": len(load.refunds)}, refund_statuses
        paid = {p["id"]: p for p in load.payments.values()}
        refunded = {r["id"]: r for r in load.refunds.values()}
        # The cashier holds exactly the refunds the merchant got as answers: a retry with the same
        # Idempotency-Key after a crash finds the refund already made (it once made a second one).
        at_cashier = eventually(
            lambda: (rows := cashier_refunds(run)) and all(r["status"] in FINAL_REFUND for r in rows) and rows,
            "every refund at the cashier final",
            DRAIN_SECONDS,
        )
        assert {r["id"] for r in at_cashier} == set(refunded), "refunds nobody was answered with"

        # ---- the ledger posted each succeeded payment and refund exactly once
        expected = set(paid) | set(refunded)
        postings = eventually(
            lambda: (found := ledger_postings(run)).keys() >= expected and found,
            "the ledger to post every payment and refund",
            DRAIN_SECONDS,
        )
        assert {ref: n for ref, n in postings.items() if n != 1} == {}, "posted more than once"
        assert set(postings) == expected, f"postings for unknown references: {set(postings) - expected}"
        net = sum(p["amount_minor"] - (p.get("platform_fee_minor") or 0) for p in paid.values())
        for r in refunded.values():
            payment = paid[r["payment_id"]]
            fee = refund_fee_share(payment.get("platform_fee_minor") or 0, r["amount_minor"], payment["amount_minor"])
            net -= r["amount_minor"] - fee
        assert merchant_pending_net(run, keys["merchant_id"]) == net

        # ---- one webhook per final event
        wanted = {("payment.succeeded", pid) for pid in paid} | {("refund.succeeded", rid) for rid in refunded}
        events = eventually(
            lambda: (e := receiver.events()).keys() >= wanted and e, "a webhook for every final event", DRAIN_SECONDS
        )
        assert {k: ids for k, ids in events.items() if len(ids) != 1} == {}, "more than one event for a state"
        assert set(events) == wanted, f"webhooks nobody expected: {set(events) - wanted}"

        # ---- nothing left behind
        eventually(lambda: not undelivered(run), "every outbox sent and no dead letter", DRAIN_SECONDS)
        verified = verify_ledger(run)
        assert verified.returncode == 0 and verified.stdout.strip().endswith("ok"), verified.stdout + verified.stderr

        # ---- the launcher restarted exactly the killed services, nothing else
        services_after = run.child_pids()
        changed = {name for name in services_before if services_after.get(name) != services_before[name]}
        assert changed == {"cashier", "ledger", "settlement"}, changed
        # ---- settlement agrees with the ledger, per merchant (last: the other checks run whatever it says)
        checks: list[dict[str, Any]] = []

        def agreed() -> bool:
            checks.append(settlement_check(run))
            return bool(checks[-1]["ok"]) and not checks[-1].get("unconfirmed")

        try:
            eventually(agreed, "settlement's check to agree with the ledger", DRAIN_SECONDS)
        except AssertionError:
            never = never_delivered_to_settlement(run, set(paid) | set(refunded))
            raise AssertionError(
                f"last check {checks[-1:]}; events never received by settlement {sorted(never)[:5]} "
                f"({len(never)}); settlement holds {settlement_records(run)}"
            ) from None

        if load.unexpected:  # what the services logged for them (the answer itself carries no trace id)
            for log_file in sorted((juhe_data_dir / "logs").glob("*.log")):
                for line in log_file.read_text(errors="replace").splitlines():
                    if "unhandled error" in line:
                        print(f"{log_file.name}: {line[:3000]}")
        print(
            f"\nfault run: {PAYMENTS} payments, {len(refunded)} refunds, kills (payments done) {faults.killed}; "
            f"settlement checks until agreed {len(checks)} (first {checks[0]}); retried answers "
            f"{dict(load.transient)} (non-503 5xx: {load.unexpected}); "
            f"webhook deliveries {len(receiver.deliveries)} for {len(wanted)} events"
        )
