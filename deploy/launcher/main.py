"""Start the whole platform on the embedded default, supervise it, stop it cleanly.

Order: every service, the gateway and the web pages as separate processes, the sandboxes together in one
(`python -m sandboxes`, each on its own port), started first: a service imports and builds its app (most of its
start) while, meanwhile, PostgreSQL starts (data kept in .juhe/pgdata) and one database per service is created and
migrated (one already at head is left alone), and side by side the Tansu broker (memory-only) starts and gets its
topics; only then does the launcher open the services'
start gate (`JUHE_START_GATE`, libs/common/runner.py) and they serve → wait until each answers /readyz → seed
the demo platform → print URLs and keys. Then supervise, each
process with its own bounded backoff: PostgreSQL that dies is reaped, its stale lock files cleared
and started again on the same port and data dir (crash recovery; the services' pools reconnect, no
service is restarted for it); a broker that dies is restarted on the same port (the outbox relays
notice the new broker epoch and re-publish); a service that dies is restarted. Ctrl-C or SIGTERM
stops everything; if the launcher itself is killed, every child gets a parent-death signal.

`--replicas N` (scale-out on one machine, tests/deploy/test_scale_out.py): every service runs N API and N
worker processes (`JUHE_<NAME>_ROLE`), each on a port of its own, and the service's usual port is a TCP
balancer in this process (deploy/launcher/balancer.py, the local stand-in for a Kubernetes Service).
`children.json` in the data dir names every process and its pid.

Import once, fork many: the launcher imports the stack the processes share (SQLAlchemy, pydantic, FastAPI,
aiokafka, httpx, uvicorn: ~2 CPU-s in each of nine processes) once, before its event loop and any thread exist,
and forks every process from itself (libs/common/prefork.py): each is still the launcher's direct child, runs its
module as `python -m <module>` would (that command line in `ps` and /proc), with its own environment, log,
parent-death signal and process group, and imports only its own modules. A process restarted later (it died) is
started the plain way, `python -m <module>` by exec: the launcher then runs threads and a loop, which a fork must
not inherit. `JUHE_LAUNCHER_FORK=0` starts every process by exec (docs/operations.md, docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

import httpx

from deploy.launcher.balancer import Balancer
from deploy.launcher.seed import demo_service_settings
from libs.common.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    create_database,
    database_url,
    free_port,
    parent_death_signal,
    port_in_use,
    reserve_ports,
)
from libs.common.kafka import ensure_platform_topics, read_or_create_broker_epoch
from libs.common.migrations import current_revisions, script_heads, upgrade
from libs.common.prefork import Fork, ForkedProcess, fork_module, fork_refusal, preload
from libs.common.runner import START_GATE_ENV
from libs.common.services import FRONTENDS, REPO_ROOT, SANDBOXES, SERVICES, ServiceSpec, service_env

# A bound, not a wait: ten Python processes starting on two busy cores (a loaded CI box) can take minutes.
READY_TIMEOUT_SECONDS = 180.0
READY_POLL_SECONDS = 0.1
RESTART_BACKOFF_MAX_SECONDS = 30.0
STABLE_RUN_SECONDS = 60.0  # a process up this long starts its backoff from scratch when it next dies
STOP_TIMEOUT_SECONDS = 15.0
SUPERVISE_INTERVAL_SECONDS = 1.0
HEADS_CACHE_FILE = "migration-heads.json"  # each service's migration heads, by its folder's listing
FORK_ENV = "JUHE_LAUNCHER_FORK"  # "0": start every process by exec, as before the fork (docs/operations.md)
COLORS = ["36", "32", "33", "35", "34", "31", "96", "92", "93", "95"]
# The demo holds a merchant's payout of ¥5,000.00 or more for an operator's approval (settlement's maker-checker,
# docs/consoles.md), so the operator console's approval queue is not empty by construction; the setting's own
# variable (JUHE_SETTLEMENT_PAYOUT_APPROVAL_THRESHOLD_MINOR, 0: hold none) overrides it.
DEMO_PAYOUT_APPROVAL_THRESHOLD_MINOR = 500_000


@dataclass
class Backoff:
    """When to restart something that died: 1 s, 2 s, 4 s … up to RESTART_BACKOFF_MAX_SECONDS while it
    keeps crashing, from 1 s again once it has run for STABLE_RUN_SECONDS. Non-blocking: the supervisor
    keeps watching everything else while one process waits for its turn."""

    failures: int = 0
    up_since: float = field(default_factory=time.monotonic)
    due_at: float | None = None  # set while a restart is pending

    def failed(self) -> float:
        now = time.monotonic()
        if self.due_at is None and now - self.up_since > STABLE_RUN_SECONDS:
            self.failures = 0
        delay = min(2.0**self.failures, RESTART_BACKOFF_MAX_SECONDS)
        self.failures += 1
        self.due_at = now + delay
        return delay

    def due(self) -> bool:
        return self.due_at is not None and time.monotonic() >= self.due_at

    def started(self) -> None:
        self.due_at = None
        self.up_since = time.monotonic()


class ChildProcess(Protocol):
    """What the launcher uses of a child: an exec'd `asyncio.subprocess.Process` or a `ForkedProcess`."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def stdout(self) -> asyncio.StreamReader | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    async def wait(self) -> int: ...


@dataclass
class Child:
    spec: ServiceSpec
    port: int
    env: dict[str, str]
    color: str
    process: ChildProcess | None = None
    fork: Fork | None = None  # forked before the loop, adopted by its first `start_child`
    backoff: Backoff = field(default_factory=Backoff)
    pump: asyncio.Task[None] | None = None
    name: str = ""  # the spec's name, or `cashier-api-2` for one of several replicas
    # The sandboxes' one process (`python -m sandboxes <names>`): {sandbox name: its port}, each served apart.
    hosts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.name or self.spec.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def urls(self) -> dict[str, str]:
        """{name: URL} of what this process serves: itself (`cashier-api-2` for a replica), or each sandbox it
        hosts."""
        if self.hosts:
            return {name: f"http://127.0.0.1:{port}" for name, port in self.hosts.items()}
        return {self.name: self.url}


@dataclass
class Platform:
    data_dir: Path
    console: TextIO = sys.stdout
    children: list[Child] = field(default_factory=list)
    pg: EmbeddedPostgres | None = None
    pg_backoff: Backoff = field(default_factory=Backoff)
    broker: EmbeddedBroker | None = None
    broker_backoff: Backoff = field(default_factory=Backoff)
    stopping: bool = False
    demo_settings: dict[str, dict[str, object]] = field(default_factory=dict)
    # When this process started (time.monotonic()), its interpreter's start and imports included: what a user
    # waits for from `make run` on (the timeline's `+…s` and "ready in … s").
    started_at: float = field(default_factory=lambda: time.monotonic() - process_age_seconds())
    replicas: int = 1
    balancers: list[Balancer] = field(default_factory=list)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def start_gate(self) -> Path:
        """The file whose existence lets the started services serve (libs/common/runner.py)."""
        return self.data_dir / "start-gate"

    def say(self, message: str) -> None:
        """A line on the console, and in logs/launcher.log: the record that stays when the console is gone."""
        elapsed = self.note(message)
        self.console.write(f"\x1b[1mjuhe\x1b[0m | +{elapsed:4.1f}s {message}\n")
        self.console.flush()

    def note(self, message: str) -> float:
        """A line in logs/launcher.log only (the start's timeline, bench/startup.py); the seconds since start."""
        elapsed = time.monotonic() - self.started_at
        with contextlib.suppress(OSError), open(self.log_dir / "launcher.log", "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} +{elapsed:.1f}s {message}\n")
        return elapsed

    # ---------------------------------------------------------------- infrastructure
    def _remembered_ports(self) -> dict[str, int]:
        path = self.data_dir / "ports.json"
        try:
            return {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (FileNotFoundError, ValueError):
            return {}

    def _pick_port(self, name: str, env_var: str, remembered: dict[str, int]) -> int:
        if os.environ.get(env_var):
            return int(os.environ[env_var])
        previous = remembered.get(name)
        if previous and not port_in_use(previous):
            return previous
        return free_port()

    def claim_infrastructure_ports(self) -> tuple[str, str]:
        """PostgreSQL's and the broker's ports (remembered in ports.json), checked free; their server URL and
        bootstrap, which the services' settings need before either is started."""
        remembered = self._remembered_ports()
        pg_port = self._pick_port("postgres", "JUHE_PG_PORT", remembered)
        broker_port = self._pick_port("broker", "JUHE_BROKER_PORT", remembered)
        for name, port in (("PostgreSQL", pg_port), ("broker", broker_port)):
            if port_in_use(port):
                raise SystemExit(
                    f"{name} port {port} is already in use; choose another with JUHE_PG_PORT/JUHE_BROKER_PORT"
                )
        (self.data_dir / "ports.json").write_text(json.dumps({"postgres": pg_port, "broker": broker_port}))
        self.pg = EmbeddedPostgres(self.data_dir / "pgdata", pg_port, self.log_dir / "postgres.log")
        self.broker = EmbeddedBroker(broker_port, self.log_dir / "broker.log")
        return self.pg.server_url, self.broker.bootstrap

    async def start_databases(self, server_url: str) -> dict[str, str]:
        """PostgreSQL started, then every service's database created and at head (`prepare_databases`)."""
        assert self.pg, "claim_infrastructure_ports first"
        await asyncio.to_thread(self.pg.start)
        self.say(f"PostgreSQL 18 on 127.0.0.1:{self.pg.port} (data in {self.data_dir / 'pgdata'})")
        return await self.prepare_databases(server_url)

    async def start_broker(self, bootstrap: str) -> None:
        """The broker started, then its topics and epoch (`prepare_broker`): no step of it waits for PostgreSQL."""
        assert self.broker, "claim_infrastructure_ports first"
        await asyncio.to_thread(self.broker.start)
        self.say(f"Tansu broker on 127.0.0.1:{self.broker.port} (memory-only)")
        await self.prepare_broker(bootstrap)

    @staticmethod
    def database_urls(server_url: str) -> dict[str, str]:
        """{service: its database's URL} on the server (the databases need not exist yet)."""
        return {spec.name: database_url(server_url, spec.database or "") for spec in SERVICES.values()}

    async def prepare_databases(self, server_url: str) -> dict[str, str]:
        """Every service's database created and at the head of its migrations. A database already at head is
        left alone: `alembic upgrade head` would find nothing to do, after ~0.45 CPU-s of Alembic reading the
        revision files and connecting (the heads are cached by the folders' listing, `script_heads`)."""
        urls = self.database_urls(server_url)
        await asyncio.gather(*(create_database(server_url, spec.database or "") for spec in SERVICES.values()))
        applied = await asyncio.gather(*(current_revisions(url) for url in urls.values()))
        cache = self.data_dir / HEADS_CACHE_FILE
        behind = [
            name
            for (name, url), at in zip(urls.items(), applied, strict=True)
            if at != script_heads(SERVICES[name].migrations_dir, cache)
        ]
        for name in behind:  # one at a time: Alembic's `context` is process-global
            await asyncio.to_thread(upgrade, SERVICES[name].migrations_dir, urls[name])
        migrated = ", ".join(SERVICES[name].database or "" for name in behind) or "none (every one at head)"
        self.say(f"databases migrated: {migrated}")
        return urls

    async def prepare_broker(self, bootstrap: str) -> None:
        await ensure_platform_topics(bootstrap)
        epoch = await read_or_create_broker_epoch(bootstrap)
        self.say(f"topics created; broker epoch {epoch[:8]}")

    # ---------------------------------------------------------------- processes
    def plan(self, db_urls: dict[str, str], bootstrap: str) -> None:
        common_env = {k: v for k, v in os.environ.items() if k not in ("JUHE_CRASH_AT", START_GATE_ENV)}
        common_env["PYTHONPATH"] = str(REPO_ROOT)
        common_env["JUHE_DATA_DIR"] = str(self.data_dir)
        common_env["PYTHONUNBUFFERED"] = "1"
        # The gateway gets `web_url` from here too (the pages it forwards); other services ignore it.
        urls = {name: f"http://127.0.0.1:{self._port(spec)}" for name, spec in {**SERVICES, **FRONTENDS}.items()}
        sandbox_urls = {name: f"http://127.0.0.1:{self._port(spec)}" for name, spec in SANDBOXES.items()}
        specs = _runnable_specs()
        self.demo_settings = demo_service_settings(self.data_dir)
        for i, spec in enumerate(s for s in specs if s.name not in SANDBOXES):
            port = self._port(spec)
            values: dict[str, object] = {"port": port, "public_base_url": f"http://127.0.0.1:{port}"}
            if spec.database:
                values |= {"database_url": db_urls.get(spec.name), "kafka_bootstrap_servers": bootstrap}
                values |= {f"{other}_url": url for other, url in urls.items() if other != spec.name}
                values |= {f"sandbox_{other}_url": url for other, url in sandbox_urls.items()}
                values |= {"bank_url": sandbox_urls["bank"]}  # settlement's payouts go to the bank sandbox
                values |= self.demo_settings.get(spec.name, {})
                if spec.name == "settlement" and "JUHE_SETTLEMENT_PAYOUT_APPROVAL_THRESHOLD_MINOR" not in os.environ:
                    values["payout_approval_threshold_minor"] = DEMO_PAYOUT_APPROVAL_THRESHOLD_MINOR
            elif spec.name in FRONTENDS:  # the web process: no database, the platform only through the gateway
                values |= {"gateway_url": urls["gateway"]}
            color = COLORS[i % len(COLORS)]
            # A service with a database serves only once PostgreSQL, its migrations and the broker are ready.
            gated_env = {**common_env, START_GATE_ENV: str(self.start_gate)} if spec.database else common_env
            if self.replicas > 1 and spec.name in SERVICES:
                self._plan_replicas(spec, values, gated_env, color)
                continue
            env = {**gated_env, **service_env(spec, values)}
            self.children.append(Child(spec=spec, port=port, env=env, color=color))
        sandboxes = [spec for spec in specs if spec.name in SANDBOXES]
        if sandboxes:
            self._plan_sandboxes(sandboxes, common_env)

    def _plan_sandboxes(self, specs: list[ServiceSpec], common_env: dict[str, str]) -> None:
        """Every sandbox in one process (`python -m sandboxes`), each on its own usual port: six Python
        processes cost ~5 × 70 MiB at rest and ~5 s of import CPU at start more (docs/performance.md)."""
        env = dict(common_env)
        hosts = {}
        for spec in specs:
            port = self._port(spec)
            env |= service_env(spec, {"port": port, "public_base_url": f"http://127.0.0.1:{port}"})
            hosts[spec.name] = port
        combined = ServiceSpec("sandboxes", "sandboxes", specs[0].default_port, None, "JUHE_SANDBOX_")
        self.children.append(Child(spec=combined, port=hosts[specs[0].name], env=env, color="90", hosts=hosts))

    def urls(self) -> dict[str, str]:
        """{service, frontend or sandbox name: URL} at its usual port: under `--replicas` the balancer's, not one
        replica's (a worker's port would be printed as the console's address and change at every start)."""
        return {spec.name: f"http://127.0.0.1:{self._port(spec)}" for spec in _runnable_specs()}

    def _plan_replicas(
        self, spec: ServiceSpec, values: dict[str, object], common_env: dict[str, str], color: str
    ) -> None:
        """N API and N worker processes on ports of their own; the service's port balances over the APIs."""
        api_ports = []
        for role in ("api", "worker"):
            for replica in range(1, self.replicas + 1):
                port = free_port()
                env = {**common_env, **service_env(spec, {**values, "port": port, "role": role})}
                name = f"{spec.name}-{role}-{replica}"
                self.children.append(Child(spec=spec, port=port, env=env, color=color, name=name))
                if role == "api":
                    api_ports.append(port)
        self.balancers.append(Balancer(spec.name, self._port(spec), api_ports))

    def _record_pids(self) -> None:
        """`children.json`: {process name: pid} of the running children (operators, the scale-out test)."""
        pids = {c.name: c.process.pid for c in self.children if c.process and c.process.returncode is None}
        (self.data_dir / "children.json").write_text(json.dumps(pids))

    @staticmethod
    def _port(spec: ServiceSpec) -> int:
        return int(os.environ.get(f"{spec.env_prefix}PORT", spec.default_port))

    def service_ports(self) -> list[int]:
        return [self._port(spec) for spec in _runnable_specs()]

    def check_ports(self) -> None:
        """Fail before touching anything when a service's port is taken."""
        busy = [(spec, self._port(spec)) for spec in _runnable_specs() if port_in_use(self._port(spec))]
        if busy:
            lines = [
                f"  {spec.name}: port {port} is in use (set {spec.env_prefix}PORT to move it)" for spec, port in busy
            ]
            raise SystemExit("cannot start, ports already in use:\n" + "\n".join(lines))

    def fork_children(self) -> None:
        """Import the shared stack once, then fork every planned process from this one (libs/common/prefork.py);
        before the event loop and any thread exist. Nothing forks when `JUHE_LAUNCHER_FORK=0` or when this
        process already runs a thread or a loop: `start_child` then execs them all, as before."""
        if os.environ.get(FORK_ENV, "1") == "0":
            return
        refusal = fork_refusal()
        if refusal:
            self.note(f"processes started by exec, not forked: {refusal}")
            return
        preload()
        self.note("shared stack imported; forking the processes")
        for child in self.children:
            earlier = [c.fork.output_fd for c in self.children if c.fork]
            child.fork = fork_module(
                child.spec.module, list(child.hosts), env=child.env, cwd=REPO_ROOT, close_fds=earlier
            )

    async def start_child(self, child: Child) -> None:
        """Adopt the child's fork if it has one not yet adopted, else start it by exec (a restart, or no fork)."""
        log_path = self.log_dir / f"{child.name}.log"
        if child.fork:
            child.process = await ForkedProcess(child.fork).adopt()
            child.fork = None  # a restart execs
        else:
            child.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                child.spec.module,
                *child.hosts,
                cwd=REPO_ROOT,
                env=child.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=parent_death_signal(signal.SIGTERM),
            )
        child.backoff.started()
        child.pump = asyncio.create_task(self._pump(child, log_path))
        self._record_pids()

    async def _pump(self, child: Child, log_path: Path) -> None:
        """Copy a child's output to its log file and, prefixed, to the console."""
        assert child.process and child.process.stdout
        prefix = f"\x1b[{child.color}m{child.name:<11}\x1b[0m| "
        with open(log_path, "ab") as log:  # noqa: ASYNC230 - a local append-only file, written line by line
            async for line in child.process.stdout:
                log.write(line)
                log.flush()
                if not self.stopping:
                    self.console.write(prefix + _readable(line.decode(errors="replace")))
                    self.console.flush()

    async def wait_ready(self) -> None:
        # N replicas: about 2N times the service processes of one, starting on the same cores.
        bound = READY_TIMEOUT_SECONDS * (1 + self.replicas) if self.replicas > 1 else READY_TIMEOUT_SECONDS
        deadline = time.monotonic() + bound
        pending = {c.name: c for c in self.children}
        async with httpx.AsyncClient(timeout=1.0) as client:
            while pending and time.monotonic() < deadline:
                for name, child in list(pending.items()):
                    if child.process and child.process.returncode is not None:
                        raise SystemExit(
                            f"{name} exited with {child.process.returncode}; see {self.log_dir / name}.log"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        answers = [await client.get(f"{url}/readyz") for url in child.urls.values()]
                        if all(answer.status_code == 200 for answer in answers):
                            del pending[name]
                            self.note(f"{name} ready")
                if pending:
                    await asyncio.sleep(READY_POLL_SECONDS)
        if pending:
            raise SystemExit(f"not ready after {bound:.0f}s: {', '.join(pending)}")

    async def supervise(self) -> None:
        """Restart what dies, each with its own backoff: PostgreSQL on its port and data dir (services
        reconnect: their pools drop dead connections), the broker on its port (new epoch → re-publish),
        services as new processes."""
        while not self.stopping:
            await asyncio.sleep(SUPERVISE_INTERVAL_SECONDS)
            await self._supervise_postgres()
            await self._supervise_broker()
            for child in self.children:
                await self._supervise_child(child)

    async def _supervise_postgres(self) -> None:
        pg, backoff = self.pg, self.pg_backoff
        if self.stopping or pg is None or pg.alive():  # alive() reaps a dead postmaster (no zombie)
            return
        if backoff.due_at is None:
            code = pg.process.returncode if pg.process else None
            delay = backoff.failed()
            self.say(
                f"PostgreSQL exited with {code}; restarting it on port {pg.port} in {delay:.0f}s "
                "(same data dir: crash recovery runs; services reconnect by themselves)"
            )
        if not backoff.due():
            return
        started = time.monotonic()
        try:
            await asyncio.to_thread(pg.restart)
        except Exception as exc:
            delay = backoff.failed()
            self.say(f"PostgreSQL did not come back ({exc}); retrying in {delay:.0f}s")
            return
        backoff.started()
        self.say(f"PostgreSQL is back on 127.0.0.1:{pg.port} after {time.monotonic() - started:.1f}s of recovery")

    async def _supervise_broker(self) -> None:
        broker, backoff = self.broker, self.broker_backoff
        if self.stopping or broker is None or broker.alive():
            return
        if backoff.due_at is None:
            delay = backoff.failed()
            self.say(f"broker died; restarting it in {delay:.0f}s (services will re-publish from their outboxes)")
        if not backoff.due():
            return
        try:
            await asyncio.to_thread(broker.start)
            await ensure_platform_topics(broker.bootstrap)
        except Exception as exc:
            delay = backoff.failed()
            self.say(f"broker did not come back ({exc}); retrying in {delay:.0f}s")
            return
        backoff.started()

    async def _supervise_child(self, child: Child) -> None:
        if self.stopping or not child.process or child.process.returncode is None:
            return
        if child.backoff.due_at is None:
            delay = child.backoff.failed()
            self.say(f"{child.name} exited with {child.process.returncode}; restarting in {delay:.0f}s")
        if child.backoff.due():
            await self.start_child(child)

    async def stop(self) -> None:
        self.stopping = True
        for balancer in self.balancers:
            await balancer.stop()
        running = [c for c in self.children if c.process and c.process.returncode is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()  # type: ignore[union-attr]
        for child in running:
            assert child.process
            try:
                await asyncio.wait_for(child.process.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
        for child in self.children:
            if child.pump:
                child.pump.cancel()
        if self.broker:
            self.broker.stop()
        if self.pg:
            self.pg.stop()

    def memory_mib(self) -> tuple[float, float]:
        """(RSS, PSS) of the platform in MiB. RSS counts a page shared by several processes (PostgreSQL's shared
        buffers, a forked backend's code) once per process; PSS divides it among them: the memory held."""
        pids = [c.process.pid for c in self.children if c.process]
        for proc in (self.pg, self.broker):
            if proc and proc.process:
                pids.append(proc.process.pid)
        figures = [_tree_memory_kib(pid) for pid in pids]
        return sum(rss for rss, _ in figures) / 1024, sum(pss for _, pss in figures) / 1024


def process_age_seconds() -> float:
    """Seconds since this process started, by the kernel's count (/proc/self/stat, 10 ms steps)."""
    started_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started_ticks / os.sysconf("SC_CLK_TCK"))


def _readable(line: str) -> str:
    """The console shows `level event key=value`; the log file keeps the full JSON line."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "event" not in record:
        return line
    skip = {"event", "level", "timestamp", "service", "logger"}
    extras = " ".join(f"{k}={v}" for k, v in record.items() if k not in skip and k != "exception")
    text = f"{record.get('level', 'info'):<7} {record['event']} {extras}".rstrip()
    if "exception" in record:
        text += "\n" + str(record["exception"])
    return text + "\n"


def _runnable_specs() -> list[ServiceSpec]:
    """Every service, the web process, and the sandboxes whose code is present."""
    return [*SERVICES.values(), *FRONTENDS.values(), *(s for s in SANDBOXES.values() if _module_exists(s.module))]


def _module_exists(module: str) -> bool:
    folder = REPO_ROOT / Path(*module.split("."))
    return (folder / "__main__.py").exists() and (folder / "app.py").exists()


def _tree_memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process and all its descendants (PostgreSQL forks a backend per connection)."""
    total = proportional = 0
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    stack = [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError):
            for line in (Path("/proc") / str(current) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        with contextlib.suppress(OSError):
            for line in (Path("/proc") / str(current) / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    proportional += int(line.split()[1])
        stack.extend(children.get(current, []))
    return total, proportional


def prepare(data_dir: Path, *, replicas: int = 1) -> tuple[Platform, str, str]:
    """Before the event loop: check and claim the ports, plan every process and fork them (`fork_children`);
    the platform, PostgreSQL's server URL and the broker's bootstrap."""
    platform = Platform(data_dir=data_dir, replicas=replicas)
    platform.log_dir.mkdir(parents=True, exist_ok=True)
    platform.check_ports()
    reserve_ports(platform.service_ports())  # its own free ports (PostgreSQL, broker, replicas) avoid them
    server_url, bootstrap = platform.claim_infrastructure_ports()
    # The processes first: they import while PostgreSQL, the migrations and the broker are prepared, and
    # the services wait at the start gate until then (docs/performance.md, "Start-up").
    platform.start_gate.unlink(missing_ok=True)
    platform.start_gate.parent.mkdir(parents=True, exist_ok=True)
    platform.plan(platform.database_urls(server_url), bootstrap)
    platform.fork_children()
    return platform, server_url, bootstrap


async def run(platform: Platform, server_url: str, bootstrap: str, *, exit_when_ready: bool = False) -> int:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    try:
        for child in platform.children:  # the forks adopted (or the processes exec'd) before anything can fail
            await platform.start_child(child)
        for balancer in platform.balancers:
            await balancer.start()
        how = "forked" if any(isinstance(c.process, ForkedProcess) for c in platform.children) else "started"
        platform.say(f"{len(platform.children)} processes {how}; preparing PostgreSQL and the broker meanwhile")
        # PostgreSQL with the databases and the broker with its topics side by side: neither waits for the other.
        db_urls, _ = await asyncio.gather(platform.start_databases(server_url), platform.start_broker(bootstrap))
        platform.start_gate.touch()
        platform.say("start gate open; waiting for /readyz")
        await platform.wait_ready()
        platform.say("all ready")
        ready_seconds = time.monotonic() - platform.started_at
        from deploy.launcher.seed import seed

        demo = await seed(platform, db_urls)
        print_summary(platform, demo, server_url, bootstrap, ready_seconds)
        if exit_when_ready:
            return 0
        supervisor = asyncio.create_task(platform.supervise())
        await stop_requested.wait()
        supervisor.cancel()
        platform.say("stopping…")
        return 0
    finally:
        await platform.stop()
        platform.say("stopped")


def print_summary(platform: Platform, demo: dict[str, str], server_url: str, bootstrap: str, ready_s: float) -> None:
    rows = [row for c in platform.children for row in c.urls.items()]
    rows += [(f"{b.name} (balancer)", f"http://127.0.0.1:{b.port}") for b in platform.balancers]
    width = max(len(name) for name, _ in rows) + 2
    lines = ["", "Juhe is running:", ""]
    lines += [f"  {name:<{width}}{url}" for name, url in rows]
    lines += [
        f"  {'postgres':<{width}}{server_url.replace('+asyncpg', '')}",
        f"  {'broker':<{width}}{bootstrap}",
        "",
        f"  API docs       http://127.0.0.1:{SERVICES['gateway'].default_port}/docs",
        f"  logs           {platform.log_dir}/<name>.log",
    ]
    if demo:
        lines += ["", "Demo credentials:"] + [f"  {k:<{width + 10}}{v}" for k, v in demo.items()]
    rss, pss = platform.memory_mib()
    lines += [
        "",
        f"ready in {ready_s:.1f} s, platform RSS {rss:.0f} MiB (PSS {pss:.0f} MiB). Ctrl-C stops everything.",
        "",
    ]
    platform.console.write("\n".join(lines) + "\n")
    platform.console.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.launcher", description=__doc__)
    parser.add_argument("command", choices=["run", "reset"], nargs="?", default="run")
    parser.add_argument("--data-dir", default=os.environ.get("JUHE_DATA_DIR", str(REPO_ROOT / ".juhe")))
    parser.add_argument("--exit-when-ready", action="store_true", help="start, seed, print, then stop (smoke check)")
    parser.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("JUHE_LAUNCHER_REPLICAS", "1")),
        help="API and worker processes per service, behind a balancer on the service's port (default 1: one "
        "process per service running both roles)",
    )
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir).resolve()
    if args.command == "reset":
        shutil.rmtree(data_dir, ignore_errors=True)
        print(f"removed {data_dir}")
        return 0
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir / "run"))
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    try:
        platform, server_url, bootstrap = prepare(data_dir, replicas=args.replicas)
        return asyncio.run(run(platform, server_url, bootstrap, exit_when_ready=args.exit_when_ready))
    except BaseException:  # kept in logs/launcher.log too: the console may be a pipe nobody reads any more
        with contextlib.suppress(OSError), open(data_dir / "logs" / "launcher.log", "a") as log:
            log.write(traceback.format_exc())
        raise
