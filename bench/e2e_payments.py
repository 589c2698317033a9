"""End-to-end payments: the whole platform from `make run`'s launcher, merchants paying through the gateway,
against the same payer flow straight at the channel sandbox, in one run on one machine.

    python -m bench.e2e_payments [--quick] [--clients 16] [--seconds 30] [--idle-seconds 10] [--warmup-seconds 5]
                                 [--profile DIR] [--sweep 4,32]

Starts the real launcher (`python -m deploy.launcher run`) on free ports in a temporary data dir: PostgreSQL,
the broker, every service, the web process and every sandbox, seeded with the demo merchant. The gateway's
write/read rate limits are raised for the run (the defaults, 1,200 writes a minute per key, would cap the
figure at 20/s: a merchant expecting this volume has its limits raised). Then:

1. **Start and idle**: the launcher's own "ready in … s" (cold: fresh data dir), then the platform at rest for
   `--idle-seconds`: CPU (percent of one core, from /proc) and RSS of every process, PostgreSQL and its
   backends included.
2. **Baseline, channel direct**: `--clients` concurrent merchants each looping "create a native-QR trade at
   the Alipay sandbox with the cashier's own connector (RSA2 signing, the merchant's demo keys), the payer
   approves it in the sandbox" — what a merchant does without Juhe. The channel notifies the merchant of each
   paid trade, and the merchant's endpoint (a `Receiver` in this process) acknowledges it; the Juhe
   phase starts only once the sandbox has no notification left to send, so the two phases do not share it.
3. **Juhe**: the same clients each looping "create a payment through the gateway with the Python SDK (signed,
   idempotency key), the payer approves it in the sandbox". First `--warmup-seconds` (5; 3 with `--quick`) of
   it, drained and not counted: the services' pools open their connections and each new PostgreSQL backend looks
   up its types once (asyncpg's introspection, 4–23 ms of the server's CPU per connection), so a short phase
   measures a running platform rather than its first seconds (docs/performance.md, "Seventh pass: the
   database"). A payment is done when the ledger has posted it
   (the merchant's `merchant_pending` balance grew by it). The demo merchant's `notify_url` is a local
   receiver, so webhooks are delivered for real.
4. **Drain**: after the load, the time until the ledger has posted, settlement has recorded and the receiver
   has been sent every payment (bounded).
5. **Checks**: every payment posted exactly once in the ledger (transfers by reference), one
   `payment.succeeded` event per payment at the receiver, no unsent outbox row or dead letter anywhere.

CPU seconds per payment per process are the /proc utime+stime deltas of each process (PostgreSQL: the
postmaster, its live backends and its reaped children) over the Juhe phase and its drain, divided by the
payments made; "above idle" first subtracts each process's idle rate over the same window (runs that made
different numbers of payments compare by what a payment itself costs). Sessions opened and transactions
committed per payment come from each service database's pg_stat_database. `--profile DIR` also records each
hot process with py-spy (speedscope JSON + a flat top list) during the Juhe phase. The load average is printed
with every phase: the machine may be shared. The bench's own CPU per payment (this process: the merchants' SDK
clients or the baseline's connector, the payer, the webhook receiver) is reported too, since it shares the same
cores. `--sweep 4,32` runs more Juhe phases on the same platform at those client counts (payments/s, create
p50/p99, CPU per payment in all processes, exactly once), after the main run.

Last line: {"baseline_pps", "juhe_pps", "ratio", "create_p50_ms", "create_p99_ms", "drain_s", "cpu_ms_per_payment",
"cpu_ms_per_payment_above_idle", "db_sessions_xacts_per_payment", "exactly_once", "ready_s", "idle_cpu_pct",
"idle_rss_mib", "load_avg_1m", "bench_client_cpu_ms_per_payment", "sweep"}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from libs.common.embedded import free_port
from libs.common.keepalive import KeepAliveTransport
from libs.common.services import FRONTENDS, REPO_ROOT, SANDBOXES, SERVICES

sys.path.insert(0, str(REPO_ROOT / "sdk" / "python"))
from juhe_sdk import AsyncClient

from tests.e2e.test_faults import Receiver, platform_headers
from tests.e2e.test_launcher import Launched

DRAIN_TIMEOUT_SECONDS = 180.0
AMOUNT_MINOR = 1_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOT = ("gateway", "cashier", "ledger", "routing", "settlement", "marketing", "sandboxes")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_avg() -> float:
    return os.getloadavg()[0]


# ------------------------------------------------------------------------------------------ /proc figures
def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    """utime + stime of a process (and, for the postmaster, of its reaped children: the backends that ended)."""
    try:
        fields = _stat(pid)
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def proc_mib(pid: int, file: str, key: str) -> float:
    """A `key: N kB` line of /proc/<pid>/<file>, in MiB (0 for a process that is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mib(pid: int) -> float:
    return proc_mib(pid, "status", "VmRSS:")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
    return found


@dataclass
class Processes:
    """The platform's processes by name: the launcher's children (children.json), PostgreSQL, the broker."""

    launcher_pid: int
    data_dir: Path
    pids: dict[str, int] = field(default_factory=dict)
    postmaster: int | None = None

    def refresh(self) -> None:
        self.pids = {k: int(v) for k, v in json.loads((self.data_dir / "children.json").read_text()).items()}
        with contextlib.suppress(OSError, ValueError, IndexError):
            self.postmaster = int((self.data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
        for pid in children_of(self.launcher_pid):
            with contextlib.suppress(OSError):
                if (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]).endswith(b"/tansu"):
                    self.pids["broker"] = pid

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far per process; "postgres" sums the postmaster, its backends and reaped children."""
        figures = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        if self.postmaster:
            figures["postgres"] = cpu_seconds(self.postmaster, with_children=True) + sum(
                cpu_seconds(pid) for pid in children_of(self.postmaster)
            )
        return figures

    def rss(self) -> dict[str, float]:
        figures = {name: rss_mib(pid) for name, pid in self.pids.items()}
        if self.postmaster:
            figures["postgres"] = rss_mib(self.postmaster) + sum(rss_mib(p) for p in children_of(self.postmaster))
        return figures


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: max(0.0, after.get(name, 0.0) - before.get(name, 0.0)) for name in after}


# ------------------------------------------------------------------------------------------ the platform
class Launcher(Launched):
    """The launcher as the launcher tests run it (free ports, console read in the background), plus the figures
    of its own "ready in … s, platform RSS … MiB" line."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        super().__init__(data_dir, {name: free_port() for name in [*SERVICES, *FRONTENDS, *SANDBOXES]}, env)
        [line] = [line for line in self.lines if "Ctrl-C stops everything" in line]
        words = line.replace(",", " ").split()  # "ready in 12.3 s, platform RSS 1234 MiB (PSS 800 MiB). Ctrl-C …"
        self.ready_s = float(words[words.index("in") + 1])
        self.rss_at_ready = float(words[words.index("RSS") + 1])

    def database(self, service: str) -> str:
        port = json.loads((self.data_dir / "ports.json").read_text())["postgres"]
        return f"postgresql://postgres@127.0.0.1:{port}/{SERVICES[service].database}"


def succeeded(receiver: Receiver) -> dict[str, set[str]]:
    """{payment id: {event ids}} of the payment.succeeded events the merchant's receiver got."""
    return {pid: ids for (kind, pid), ids in receiver.events().items() if kind == "payment.succeeded"}


# ------------------------------------------------------------------------------------------ the load
@dataclass
class Phase:
    name: str
    created: list[str] = field(default_factory=list)  # payment ids (or out_trade_nos)
    create_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)
    # CPU seconds of this process (the merchants' clients, the payer, the webhook receiver's thread) over the load:
    # the bench shares the machine's cores with the platform, so its own cost per payment is reported too.
    client_cpu_s: float = 0.0


async def _loop(phase: Phase, clients: int, seconds: float, one: Any) -> None:
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            try:
                await one(n, i)
            except Exception as exc:  # counted and reported; the load goes on as a merchant's would
                phase.errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    phase.load = (load_avg(), 0.0)
    await asyncio.gather(*(worker(n) for n in range(clients)))
    phase.seconds = time.perf_counter() - started
    phase.client_cpu_s = time.process_time() - cpu_started
    phase.load = (phase.load[0], load_avg())


async def approve(http: httpx.AsyncClient, sandbox_url: str, channel: str, out_trade_no: str) -> None:
    path = "trades" if channel == "alipay" else "orders"
    answer = await http.post(f"{sandbox_url}/control/{path}/{out_trade_no}/approve", json={})
    answer.raise_for_status()


async def notifications_settled(sandbox_url: str) -> int:
    """Waits (bounded) until the sandbox has no notification left to send; returns how many were still pending.

    The baseline's merchant acknowledges the channel's notifications (a `Receiver` answering `success`): a notify
    URL nobody listened on left the sandbox retrying every baseline trade's notification into the Juhe phase, ~10,000
    jobs after a 30 s baseline, its queue's bound, at which it drops new ones, so the Juhe phase's payments were
    settled by the cashier's poller 5 s and more after the payer's approval (docs/performance.md, "Sixth pass, the
    coordinator")."""
    async with httpx.AsyncClient(timeout=10) as http:
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while True:
            pending = int(
                (await http.get(f"{sandbox_url}/control/notifications", params={"limit": 1})).json()["pending"]
            )
            if pending == 0 or time.monotonic() > deadline:
                return pending
            await asyncio.sleep(0.2)


async def baseline(launcher: Launcher, clients: int, seconds: float, notify_url: str) -> Phase:
    """The payer flow straight at the Alipay sandbox with the cashier's connector and the demo merchant's keys."""
    from services.cashier.connectors.base import PrepayRequest
    from services.cashier.connectors.registry import CHANNELS
    from services.cashier.domain.payments import PaymentScene

    config = json.loads((launcher.data_dir / "demo-channels.json").read_text())["mch_demo"]["alipay"]
    connector = CHANNELS["alipay"].build(config)
    phase = Phase("channel direct")
    async with httpx.AsyncClient(timeout=30, transport=KeepAliveTransport(connections_max=clients)) as http:

        async def one(n: int, i: int) -> None:
            out_trade_no = f"B{n:02d}{i:06d}{uuid.uuid4().hex[:8]}"
            request = PrepayRequest(
                out_trade_no=out_trade_no,
                amount_minor=AMOUNT_MINOR,
                currency="CNY",
                description="Bench",
                scene=PaymentScene.NATIVE_QR,
                notify_url=notify_url,  # the merchant's own endpoint (a Receiver answering `success`)
            )
            t0 = time.perf_counter()
            await connector.prepay(request)
            phase.create_ms.append((time.perf_counter() - t0) * 1000)
            await approve(http, launcher.url("alipay"), "alipay", out_trade_no)
            phase.created.append(out_trade_no)

        await _loop(phase, clients, seconds, one)
    with contextlib.suppress(Exception):
        await connector.aclose()  # type: ignore[attr-defined]
    return phase


async def through_juhe(launcher: Launcher, keys: dict[str, Any], clients: int, seconds: float) -> Phase:
    phase = Phase("Juhe (gateway)")
    gateway = launcher.url("gateway")
    # The bench's own clients on the platform's transport (libs/common/keepalive.py): their CPU shares the cores.
    async with (
        httpx.AsyncClient(
            base_url=gateway, timeout=30, transport=KeepAliveTransport(connections_max=clients)
        ) as sdk_http,
        httpx.AsyncClient(timeout=30, transport=KeepAliveTransport(connections_max=clients)) as payer,
        AsyncClient(gateway, key_id=keys["key_id"], secret=keys["secret"], http_client=sdk_http, max_retries=0) as juhe,
    ):

        async def one(n: int, i: int) -> None:
            t0 = time.perf_counter()
            payment = await juhe.payments.create(
                merchant_order_no=f"E{n:02d}{i:06d}{uuid.uuid4().hex[:8]}",
                amount_minor=AMOUNT_MINOR,
                currency="CNY",
                description="Bench",
                scene="native_qr",
            )
            phase.create_ms.append((time.perf_counter() - t0) * 1000)
            attempt = payment["attempts"][-1]
            await approve(payer, launcher.url(attempt["channel"]), attempt["channel"], attempt["out_trade_no"])
            phase.created.append(payment["id"])

        await _loop(phase, clients, seconds, one)
    return phase


# ------------------------------------------------------------------------------------------ drain and checks
async def database_counters(launcher: Launcher) -> dict[str, tuple[int, int]]:
    """(sessions opened, transactions committed) so far per service database (pg_stat_database): a new
    session is a new backend (fork, catalog caches, the client's set-up), so sessions per payment show a
    connection pool that opens and closes connections under the load."""
    conn = await asyncpg.connect(launcher.database("cashier"))
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        rows = await conn.fetch("SELECT datname, sessions, xact_commit FROM pg_stat_database")
    finally:
        await conn.close()
    names = {SERVICES[name].database: name for name in SERVICES}
    return {names[r["datname"]]: (int(r["sessions"]), int(r["xact_commit"])) for r in rows if r["datname"] in names}


async def _count(url: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def drain(launcher: Launcher, receiver: Receiver, ids: list[str], started: float) -> dict[str, float | None]:
    """Seconds from the load's end until each consumer of the payments has all of them (None: not in time).

    One connection per database for all the polls: a new one each 0.1 s cost PostgreSQL ~4 ms of CPU (a backend's
    fork and set-up), counted in its CPU per payment and in the ledger's and settlement's sessions."""
    async with contextlib.AsyncExitStack() as stack:
        connections: dict[str, asyncpg.Connection] = {}
        for name in ("ledger", "settlement"):
            connections[name] = await asyncpg.connect(launcher.database(name))
            stack.push_async_callback(connections[name].close)
        return await _drain(connections, receiver, ids, started)


async def _drain(
    connections: dict[str, asyncpg.Connection], receiver: Receiver, ids: list[str], started: float
) -> dict[str, float | None]:
    wanted = len(ids)
    checks = {
        "ledger": "SELECT count(DISTINCT reference) FROM transfers WHERE reference = ANY($1)",
        "settlement": "SELECT count(*) FROM payment_records WHERE payment_id = ANY($1) AND status = 'succeeded'",
    }
    done: dict[str, float | None] = {"ledger": None, "settlement": None, "webhooks": None}
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while time.monotonic() < deadline and any(v is None for v in done.values()):
        for name, sql in checks.items():
            if done[name] is None and int(await connections[name].fetchval(sql, ids)) >= wanted:
                done[name] = time.perf_counter() - started
        if done["webhooks"] is None and len(succeeded(receiver).keys() & set(ids)) >= wanted:
            done["webhooks"] = time.perf_counter() - started
        await asyncio.sleep(0.1)
    return done


async def exactly_once(launcher: Launcher, receiver: Receiver, ids: list[str]) -> dict[str, Any]:
    conn = await asyncpg.connect(launcher.database("ledger"))
    try:
        rows = await conn.fetch(
            "SELECT reference, count(*) AS n FROM transfers"
            " WHERE source = 'cashier' AND reference = ANY($1) GROUP BY 1",
            ids,
        )
    finally:
        await conn.close()
    postings = {r["reference"]: int(r["n"]) for r in rows}
    hooks = succeeded(receiver)
    unsent = {}
    for name in SERVICES:
        n = await _count(
            launcher.database(name),
            "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL)"
            " + CASE WHEN to_regclass('inbox_dead_letter') IS NULL THEN 0"
            " ELSE (SELECT count(*) FROM inbox_dead_letter) END",
        )
        if n:
            unsent[name] = n
    return {
        "not_posted": sum(1 for i in ids if i not in postings),
        "posted_twice": sum(1 for n in postings.values() if n > 1),
        "webhooks_missing": sum(1 for i in ids if i not in hooks),
        "webhook_events_twice": sum(1 for i in ids if len(hooks.get(i, ())) > 1),
        "unsent_or_dead": unsent,
    }


# ------------------------------------------------------------------------------------------ profiling
@contextlib.contextmanager
def profiled(processes: Processes, names: tuple[str, ...], out: Path | None) -> Iterator[None]:
    """py-spy on each named process for the duration of the block (nothing when `out` is None)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if out is None or not Path(spy).exists():
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for name in names:
        if name in processes.pids:
            cmd = [spy, "record", "--nonblocking", "--rate", "50", "--format", "raw"]
            cmd += ["--pid", str(processes.pids[name]), "--output", str(out / f"{name}.txt")]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)
        for name in names:
            raw = out / f"{name}.txt"
            if raw.exists():
                (out / f"{name}.top.txt").write_text(flat_top(raw))


def flat_top(raw: Path, n: int = 40) -> str:
    """Self and total samples per function from py-spy's collapsed stacks (`frame;frame;… count`)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    lines = [f"{samples} samples", "self %  function"]
    lines += [f"{100 * c / samples:5.1f}  {f}" for f, c in own.most_common(n)]
    lines += ["", "total %  function"]
    lines += [f"{100 * c / samples:5.1f}  {f}" for f, c in total.most_common(n)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ main
def idle(processes: Processes, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    """CPU percent of one core and RSS MiB per process while nothing happens."""
    before, t0 = processes.cpu(), time.perf_counter()
    time.sleep(seconds)  # the measured interval itself, not a wait for a condition
    elapsed = time.perf_counter() - t0
    pct = {k: 100 * v / elapsed for k, v in cpu_delta(before, processes.cpu()).items()}
    return pct, processes.rss()


def report_phase(phase: Phase, done: int, seconds: float) -> float:
    pps = done / seconds if seconds else 0.0
    errors = sum(phase.errors.values())
    print(
        f"{phase.name:16} {done:7d} {errors:6d} {pps:8.1f} {percentile(phase.create_ms, 0.5):8.1f} "
        f"{percentile(phase.create_ms, 0.99):8.1f}   load {phase.load[0]:.1f}→{phase.load[1]:.1f}"
    )
    for what, n in phase.errors.most_common(3):
        print(f"    {n} × {what}")
    return pps


@dataclass
class SweepPoint:
    """One more Juhe phase at another client count (`--sweep`), on the same running platform."""

    clients: int
    phase: Phase
    pps: float
    cpu_s: float
    exactly_once: bool
    sessions: dict[str, float]  # database sessions opened per payment, per service database


def sweep_point(
    launcher: Launcher, processes: Processes, receiver: Receiver, keys: dict[str, Any], clients: int, seconds: float
) -> SweepPoint:
    db_before = asyncio.run(database_counters(launcher))
    cpu_before = processes.cpu()
    phase = asyncio.run(through_juhe(launcher, keys, clients, seconds))
    drained = asyncio.run(drain(launcher, receiver, phase.created, time.perf_counter()))
    cpu_s = sum(cpu_delta(cpu_before, processes.cpu()).values())
    db_after = asyncio.run(database_counters(launcher))
    n = max(len(phase.created), 1)
    sessions = {name: round((db_after[name][0] - db_before[name][0]) / n, 2) for name in db_after if name in db_before}
    checks = asyncio.run(exactly_once(launcher, receiver, phase.created))
    ok = not any(v for v in checks.values()) and all(v is not None for v in drained.values())
    pps = len(phase.created) / (phase.seconds + (drained["ledger"] or DRAIN_TIMEOUT_SECONDS))
    return SweepPoint(clients, phase, pps, cpu_s, ok, sessions)


def client_ms(phase: Phase) -> float:
    """The bench's own CPU per payment of a phase (milliseconds)."""
    return round(1000 * phase.client_cpu_s / max(len(phase.created), 1), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (under a minute after start)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0, help="load duration of each phase")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=5.0,
        help="Juhe load before the measured phase, not counted (pools, connections, plans, caches warm)",
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy each hot process into this folder")
    parser.add_argument(
        "--sweep",
        type=lambda v: [int(c) for c in v.split(",") if c],
        default=[],
        help="more Juhe phases after the main one at these client counts, e.g. 4,32 (same platform)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.idle_seconds, args.warmup_seconds = 10.0, 5.0, min(args.warmup_seconds, 3.0)
    env = {
        "JUHE_GATEWAY_RATE_LIMIT_WRITE_MAX": "10000000",
        "JUHE_GATEWAY_RATE_LIMIT_READ_MAX": "10000000",
        "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp/juhe-runtime"),
    }
    load_start = load_avg()
    receiver = Receiver()
    receiver.thread.start()
    with tempfile.TemporaryDirectory(prefix="juhe-bench-e2e-") as tmp:
        data_dir = Path(tmp) / "juhe"
        launcher = Launcher(data_dir, env)
        try:
            processes = Processes(launcher.proc.pid, data_dir)
            processes.refresh()
            print(
                f"platform ready in {launcher.ready_s} s (cold), RSS {launcher.rss_at_ready} MiB"
                f" (load {load_avg():.1f})"
            )
            idle_pct, idle_rss = idle(processes, args.idle_seconds)
            idle_load = load_avg()
            keys = json.loads((data_dir / "demo-keys.json").read_text())
            httpx.put(
                f"{launcher.url('cashier')}/v1/admin/merchants/{keys['merchant_id']}",
                json={"notify_url": receiver.url},
                headers=platform_headers(),
                timeout=30,
            ).raise_for_status()

            # The baseline merchant's endpoint for the channel's notifications, answered as Alipay requires.
            acknowledger = Receiver(answer=b"success", parse=bytes)
            acknowledger.thread.start()
            base = asyncio.run(baseline(launcher, args.clients, args.seconds, acknowledger.url))
            left = asyncio.run(notifications_settled(launcher.url("alipay")))
            acknowledger.server.shutdown()
            print(f"baseline: {len(acknowledger.deliveries)} channel notifications acknowledged, {left} left")
            if args.warmup_seconds > 0:
                warm = asyncio.run(through_juhe(launcher, keys, args.clients, args.warmup_seconds))
                asyncio.run(drain(launcher, receiver, warm.created, time.perf_counter()))
                print(f"warm-up: {len(warm.created)} payments through Juhe in {warm.seconds:.0f} s, not counted")
            processes.refresh()
            db_before = asyncio.run(database_counters(launcher))
            cpu_before, cpu_started = processes.cpu(), time.perf_counter()
            with profiled(processes, HOT, args.profile):
                juhe = asyncio.run(through_juhe(launcher, keys, args.clients, args.seconds))
            load_end = time.perf_counter()
            load_started = load_end - juhe.seconds
            drained = asyncio.run(drain(launcher, receiver, juhe.created, load_end))
            cpu = cpu_delta(cpu_before, processes.cpu())
            cpu_seconds_window = time.perf_counter() - cpu_started
            db_after = asyncio.run(database_counters(launcher))
            checks = asyncio.run(exactly_once(launcher, receiver, juhe.created))
            sweep = [sweep_point(launcher, processes, receiver, keys, clients, args.seconds) for clients in args.sweep]
        finally:
            launcher.stop()
    receiver.server.shutdown()

    n = len(juhe.created)
    ledger_drain = drained["ledger"]
    # A payment is done when the ledger has posted it: throughput counts the load and the ledger's catch-up.
    juhe_seconds = juhe.seconds + (ledger_drain or DRAIN_TIMEOUT_SECONDS)
    print()
    print(f"{'path':16} {'payments':>7} {'errors':>6} {'pay/s':>8} {'p50 ms':>8} {'p99 ms':>8}   (create latency)")
    base_pps = report_phase(base, len(base.created), base.seconds)
    juhe_pps = report_phase(juhe, n, juhe_seconds)
    ratio = juhe_pps / base_pps if base_pps else 0.0
    print(f"Juhe end to end = {ratio:.1%} of the channel direct ({args.clients} clients, {args.seconds:.0f} s each)")
    print(
        "drain after the load: "
        + ", ".join(f"{k} {'not in time' if v is None else f'{v:.1f} s'}" for k, v in drained.items())
        + f" (load started {load_started:.0f})"
    )
    print()
    total_cpu = sum(cpu.values())
    # Above idle: less what the process spends at rest over the same window (its idle rate), so runs that made
    # different numbers of payments (the machine's load) compare by what a payment itself costs.
    above = {k: max(0.0, v - idle_pct.get(k, 0.0) / 100 * cpu_seconds_window) for k, v in cpu.items()}
    print(f"{'process':12} {'CPU s':>7} {'ms/payment':>10} {'above idle':>10} {'idle %core':>10} {'idle RSS MiB':>12}")
    for name in sorted(cpu, key=lambda k: -cpu[k]):
        per, net = (1000 * cpu[name] / n, 1000 * above[name] / n) if n else (0.0, 0.0)
        print(
            f"{name:12} {cpu[name]:7.1f} {per:10.1f} {net:10.1f} {idle_pct.get(name, 0.0):10.1f}"
            f" {idle_rss.get(name, 0.0):12.0f}"
        )
    total_idle, total_rss = sum(idle_pct.values()), sum(idle_rss.values())
    total_above = 1000 * sum(above.values()) / max(n, 1)
    print(
        f"{'all':12} {total_cpu:7.1f} {1000 * total_cpu / max(n, 1):10.1f} {total_above:10.1f} {total_idle:10.1f}"
        f" {total_rss:12.0f}"
    )
    print(f"idle measured over {args.idle_seconds:.0f} s at load {idle_load:.1f}")
    per_db = {
        name: tuple(
            round((after - before) / max(n, 1), 2) for before, after in zip(db_before[name], counts, strict=True)
        )
        for name, counts in sorted(db_after.items())
        if name in db_before
    }
    print(
        "per payment, database sessions opened / transactions: "
        + ", ".join(f"{name} {sessions} / {xacts}" for name, (sessions, xacts) in per_db.items())
    )
    ok = not any(v for v in checks.values()) and all(v is not None for v in drained.values())
    print(f"exactly once: {'yes' if ok else 'NO'} {checks}")
    load_final = load_avg()
    print(f"the bench's own CPU per payment: channel direct {client_ms(base)} ms, Juhe {client_ms(juhe)} ms")
    for point in sweep:
        print(
            f"sweep {point.clients:3d} clients: {point.pps:6.1f} payments/s, create p50"
            f" {percentile(point.phase.create_ms, 0.5):7.1f} / p99 {percentile(point.phase.create_ms, 0.99):7.1f} ms,"
            f" {1000 * point.cpu_s / max(len(point.phase.created), 1):6.1f} ms of CPU per payment in all processes"
            f" (bench {client_ms(point.phase)} ms), exactly once {'yes' if point.exactly_once else 'NO'},"
            f" load {point.phase.load[0]:.1f}→{point.phase.load[1]:.1f}; database sessions opened per payment"
            f" {point.sessions}"
        )
    print(f"load average (1 min) {load_start:.2f} at start, {load_final:.2f} at end, {os.cpu_count()} CPUs")
    print(
        json.dumps(
            {
                "baseline_pps": round(base_pps, 1),
                "juhe_pps": round(juhe_pps, 1),
                "ratio": round(ratio, 3),
                "create_p50_ms": round(percentile(juhe.create_ms, 0.5), 1),
                "create_p99_ms": round(percentile(juhe.create_ms, 0.99), 1),
                "baseline_create_p99_ms": round(percentile(base.create_ms, 0.99), 1),
                "payments": n,
                "drain_s": {k: None if v is None else round(v, 1) for k, v in drained.items()},
                "cpu_ms_per_payment": {k: round(1000 * v / max(n, 1), 1) for k, v in sorted(cpu.items())},
                "cpu_ms_per_payment_total": round(1000 * total_cpu / max(n, 1), 1),
                "cpu_ms_per_payment_above_idle": round(total_above, 1),
                "db_sessions_xacts_per_payment": per_db,
                "exactly_once": ok,
                "ready_s": launcher.ready_s,
                "idle_cpu_pct": round(total_idle, 1),
                "idle_rss_mib": round(total_rss),
                "load_avg_1m": [round(load_start, 2), round(load_final, 2)],
                "bench_client_cpu_ms_per_payment": {"baseline": client_ms(base), "juhe": client_ms(juhe)},
                "sweep": [
                    {
                        "clients": point.clients,
                        "juhe_pps": round(point.pps, 1),
                        "create_p50_ms": round(percentile(point.phase.create_ms, 0.5), 1),
                        "create_p99_ms": round(percentile(point.phase.create_ms, 0.99), 1),
                        "cpu_ms_per_payment_total": round(1000 * point.cpu_s / max(len(point.phase.created), 1), 1),
                        "bench_client_cpu_ms_per_payment": client_ms(point.phase),
                        "exactly_once": point.exactly_once,
                        "db_sessions_per_payment": point.sessions,
                        "load_avg_1m": [round(point.phase.load[0], 2), round(point.phase.load[1], 2)],
                    }
                    for point in sweep
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
