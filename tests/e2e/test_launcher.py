"""`make run`'s launcher as a user runs it: everything ready, Ctrl-C stops all, a second start reuses the data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python"))
from juhe_sdk import Client

from libs.common.embedded import PG_SYNC_ENV, free_port, port_in_use
from libs.common.prefork import module_of
from libs.common.services import FRONTENDS, REPO_ROOT, SANDBOXES, SERVICES
from libs.common.testing.waiting import eventually_sync

# Bounds, not waits: a start of the whole platform on a 2-core machine loaded by other runs has been seen
# to take over 90 s, and the first test starts it twice.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
START_TIMEOUT_SECONDS = 240.0  # more than the launcher's own READY_TIMEOUT_SECONDS: it reports first


def _start(data_dir: Path, ports: dict[str, int], extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUHE_")}
    env[PG_SYNC_ENV] = "off"  # commits do not wait for the disk; still safe against the kills these tests do
    env |= extra_env or {}
    for spec in [*SERVICES.values(), *FRONTENDS.values(), *SANDBOXES.values()]:
        # Never a fixed default port in tests: a process the caller did not name gets a free one.
        env[f"{spec.env_prefix}PORT"] = str(ports[spec.name] if spec.name in ports else free_port())
    return subprocess.Popen(
        [sys.executable, "-m", "deploy.launcher", "run", "--data-dir", str(data_dir)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_running(proc: subprocess.Popen[str]) -> list[str]:
    """The launcher's console up to "ready"; a launcher that never gets there is stopped with its children
    before the error (or pytest-timeout's interruption) propagates, so no platform outlives its test."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                console = "".join(lines[-40:]) + proc.stdout.read()
                failure = SilentExit if not console.strip() else AssertionError
                raise failure(f"launcher exited early ({proc.returncode}):\n{console}{_logs_of(proc)}")
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                return lines
        raise AssertionError("launcher not ready:\n" + "".join(lines[-40:]))
    except BaseException:
        _abandon(proc)
        raise


class SilentExit(AssertionError):
    """The launcher exited before its console said a line. Seen in clean-clone CI runs under load: its
    `logs/launcher.log` then held "cannot start, ports already in use" (a port the test had picked was taken
    by another process before the launcher started) while the test's pipe had read nothing of it."""


PORTS_TAKEN = "ports already in use"


def _start_running(
    data_dir: Path,
    ports: dict[str, int],
    extra_env: dict[str, str] | Callable[[dict[str, int]], dict[str, str]] | None = None,
) -> tuple[subprocess.Popen[str], list[str]]:
    """`_start` + `_wait_running`. A port taken between the test's pick and the launcher's start is the
    harness's race, not the launcher's fault (the launcher refusing a busy port is tested on its own): the
    launcher is started once more on newly picked ports, written into `ports` (and `extra_env`, when it is a
    function of the ports, is built again), with a warning in the run's summary."""
    for attempt in (1, 2):
        env = extra_env(ports) if callable(extra_env) else extra_env
        proc = _start(data_dir, ports, env)
        try:
            return proc, _wait_running(proc)
        except AssertionError as failure:  # its text holds the console and the data dir's logs
            if attempt == 2 or PORTS_TAKEN not in str(failure):
                raise
            warnings.warn(f"launcher started again on new ports: {failure}", stacklevel=2)
            if proc.stdout:
                proc.stdout.close()
            ports.update({name: free_port() for name in ports})
    raise AssertionError("unreachable")


def _logs_of(proc: subprocess.Popen[str], tail_chars: int = 2000) -> str:
    """The end of every log file in the launcher's data dir: what its children said when its console did not."""
    args = list(proc.args) if isinstance(proc.args, list) else []
    if "--data-dir" not in args:
        return ""
    logs = Path(str(args[args.index("--data-dir") + 1])) / "logs"
    parts = [
        f"\n--- {path.name}\n{path.read_text(errors='replace')[-tail_chars:]}" for path in sorted(logs.glob("*.log"))
    ]
    return "".join(parts) or f"\n(no logs in {logs})"


def _abandon(proc: subprocess.Popen[str]) -> None:
    """Stop a launcher that failed to start: Ctrl-C (it stops its children), then kill if it does not exit."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=60)  # reads the console meanwhile: a full pipe would block its shutdown
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)


def _processes_using(data_dir: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(data_dir) in line and "pytest" not in line]


def _listeners(ports: Iterable[int]) -> str:
    """`ss`'s lines for these listening ports (with the owning process where visible): whose port it is."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=False).stdout
    return "\n".join(line for line in out.splitlines() if any(f":{port} " in line for port in ports))


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    return output


class Launched:
    """A running launcher whose console is read in the background: a full stdout pipe would block the
    launcher's event loop (and with it the supervisor) in the middle of a long test."""

    def __init__(self, data_dir: Path, ports: dict[str, int], env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.ports = ports
        self.proc, self.lines = _start_running(data_dir, ports, env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def said(self, text: str) -> int:
        """How many console lines contain `text` (the launcher's own lines and its children's)."""
        return sum(text in line for line in list(self.lines))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        return code

    def child_pids(self) -> dict[str, int]:
        """{service name, or `sandboxes` for the sandboxes' one process: pid} of the launcher's running children."""
        modules = {spec.module: name for name, spec in SERVICES.items()} | {"sandboxes": "sandboxes"}
        found: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) != self.proc.pid or fields[0] == "Z":
                    continue
                module = module_of((entry / "cmdline").read_bytes())  # exec'd or forked (libs/common/prefork.py)
                if module in modules:
                    found[modules[module]] = int(entry.name)
        return found

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def query(self, database: str, sql: str) -> list[dict[str, Any]]:
        """Rows of one query on one of the launcher's databases (a fresh connection each time)."""
        port = json.loads((self.data_dir / "ports.json").read_text())["postgres"]

        async def rows() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/{database}")
            try:
                return [dict(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        return asyncio.run(rows())

    def listening(self) -> set[str]:
        """The databases in which a process's listener is connected: the relay's wake-ups share one LISTEN connection
        with the worker loops' (libs.common.wakeups), whose last statement is the LISTEN of one of its channels, in
        the order of a set: the same in every process the launcher forked (one hash seed), so any LISTEN counts."""
        sql = "SELECT DISTINCT datname FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
        return {r["datname"] for r in self.query("postgres", sql)}

    def not_ready(self) -> list[str]:
        """The services whose /readyz does not answer 200 (database and broker both reachable)."""
        down = []
        for name in SERVICES:
            try:
                if httpx.get(f"{self.url(name)}/readyz", timeout=5).status_code == 200:
                    continue
            except httpx.HTTPError:
                pass
            down.append(name)
        return down


@contextlib.contextmanager
def launched(
    data_dir: Path, ports: dict[str, int] | None = None, env: dict[str, str] | None = None
) -> Iterator[Launched]:
    """The launcher on free ports (`env`: extra settings for it and its children), stopped on exit."""
    run = Launched(data_dir, ports or {name: free_port() for name in [*SERVICES, *SANDBOXES]}, env)
    try:
        yield run
    finally:
        run.stop()


def eventually(check: Callable[[], Any], what: str, seconds: float = 120.0) -> Any:
    """Poll `check` until it returns something truthy (bounded); fail naming `what`. The e2e tests' spelling
    of `libs.common.testing.waiting.eventually_sync` (positional bound, in seconds)."""
    return eventually_sync(check, what, timeout_seconds=seconds, poll_seconds=0.3)


def test_launcher_starts_everything_stops_cleanly_restarts_on_the_same_data_and_killed_leaves_nothing(
    juhe_data_dir: Path,
) -> None:
    """Ctrl-C stops the first start cleanly; the second start keeps its data and is then SIGKILLed: no cleanup
    code runs in the launcher, its children stop by parent-death signal (one platform start for both stops)."""
    data_dir = juhe_data_dir
    ports = {name: free_port() for name in [*SERVICES, *SANDBOXES]}

    first, lines = _start_running(data_dir, ports)
    try:
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
    busy = {name: port for name, port in ports.items() if port_in_use(port)}
    assert not busy, f"ports still open after Ctrl-C: {busy}\n{_listeners(busy.values())}"

    second, second_lines = _start_running(data_dir, ports)
    try:
        # Every database is at head after the first start: the second leaves them alone (no Alembic run).
        assert any("databases migrated: none" in line for line in second_lines), "".join(second_lines[-40:])
        kept = httpx.get(f"http://127.0.0.1:{ports['ledger']}/v1/accounts/{account_id}", timeout=5)
        assert kept.status_code == 200, "the second start must keep the first start's data"
    finally:
        second.kill()  # SIGKILL: no cleanup code runs in the launcher
        second.communicate(timeout=60)
    eventually(lambda: _processes_using(data_dir) == [], "parent-death signals to stop every child", 30)


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
    eventually(lambda: juhe.payments.retrieve(payment["id"])["status"] == "succeeded", "the demo payment", 60)

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


def test_a_killed_postgresql_is_restarted_and_services_reconnect_without_a_restart(juhe_data_dir: Path) -> None:
    """SIGKILL the postmaster: the launcher reaps it, clears its stale lock files, starts it again on the
    same port and data dir (crash recovery) and says so; every service becomes ready again in the same
    process, and a payment through the gateway succeeds."""
    with launched(juhe_data_dir) as run:
        services_before = run.child_pids()
        assert set(services_before) == set(SERVICES) | {"sandboxes"}
        listeners = eventually(run.listening, "the outbox relays to listen")
        killed = run.postmaster_pid()
        assert killed is not None
        os.kill(killed, signal.SIGKILL)

        eventually(lambda: run.said("PostgreSQL is back"), "the launcher to restart PostgreSQL")
        assert run.said("PostgreSQL exited with -9") == 1
        assert run.postmaster_pid() not in (None, killed)
        eventually(lambda: not run.not_ready(), "every service ready again")
        eventually(lambda: run.listening() == listeners, "every outbox relay listening again")
        _pay_through_the_gateway_as_the_demo_merchant(run.data_dir, run.ports)
        assert run.child_pids() == services_before, "no service may need a restart of its own"
        assert run.said("exited with") == 1, "only PostgreSQL died"
    assert run.proc.returncode == 0
    assert _processes_using(juhe_data_dir) == []


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
