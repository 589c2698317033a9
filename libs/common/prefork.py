"""Import once, fork many: start `python -m <module>` children as forks of one process that imported the shared
stack already (docs/performance.md, "Fifth pass"; docs/operations.md, "How the launcher starts the processes").

Each of the platform's nine Python processes spends ~2 CPU-s importing the same libraries (SQLAlchemy, pydantic,
FastAPI, aiokafka, httpx, asyncpg, cryptography, uvicorn) before it imports its own modules: on two cores that
alone was ~9 s of a start. The launcher therefore imports them once (`preload`), freezes its objects out of the
garbage collector (`gc.freeze()`: a collection in a child then neither walks nor writes those pages, so they stay
shared copy-on-write), and forks each child (`fork_module`), which imports only its own modules and runs
`<module>` as `__main__`, as `python -m <module>` would. The parent adopts each fork in its event loop as a
`ForkedProcess`, which behaves as the `asyncio.subprocess.Process` the launcher otherwise gets from exec.

What a fork must not inherit, and how each is handled:

- **threads and an event loop**: `fork_module` refuses to fork when a second thread runs or an event loop is
  running (a lock held by another thread stays locked in the child forever): the launcher forks before
  `asyncio.run`, and restarts a child later with the plain exec.
- **open files and sockets**: the child's stdout and stderr are a new pipe (the parent reads it, as the exec
  path's `stdout=PIPE`); the read ends of earlier children's pipes are closed in every later child; the parent
  holds no other descriptor when it forks (tests: `libs/common/tests/test_prefork.py`).
- **buffered output**: the parent's stdout and stderr are flushed before each fork (else a child would print the
  parent's pending text again); the child writes through (as `PYTHONUNBUFFERED=1`).
- **random state**: `random`'s global generator reseeds itself in a forked child (CPython's at-fork hook);
  `secrets`, `uuid4` and OpenSSL read the kernel's generator, which forks do not share.
- **logging**: the parent configures no handler before it forks; a child configures its own (`create_app`).
- **the hash seed** (`PYTHONHASHSEED`'s random secret) cannot change after an interpreter starts: the forks of one
  launcher share it (still random at every start, which is what protects against hash flooding), so a set of
  strings iterates in the same order in each of them, where exec'd processes differed.
- **its environment, directory, command line, parent-death signal**: set in the child from what the exec would
  have had (`env`, `cwd`); the command line reads `<python> -m <module> <args…>` through `setproctitle` (in
  `/proc/<pid>/cmdline` as one string, space-separated: `module_of` reads both forms).
- **exit**: the child never returns into the parent's code: it runs what the interpreter runs at exit (non-daemon
  threads joined, `atexit` handlers, output flushed) and leaves by `os._exit` with `python -m`'s exit status.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import importlib
import os
import runpy
import signal
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from libs.common.embedded import parent_death_signal

# The shared stack: what every service process (and mostly the web and the sandboxes' process) imports before
# its own modules, including what uvicorn loads only when it serves. Measured with `python -X importtime` and
# each process's `sys.modules` (docs/performance.md, "Fifth pass"); a module missing here is simply imported by
# the child, as before, and one listed here that a child does not use costs it nothing but shared pages.
PRELOAD: tuple[str, ...] = (
    "libs.common.web",
    "libs.common.db",
    "libs.common.kafka",
    "libs.common.outbox",
    "libs.common.inbox",
    "libs.common.tasks",
    "libs.common.http",
    "libs.common.internal_auth",
    "libs.common.paging",
    "libs.common.modes",
    "libs.common.money",
    "libs.common.runner",
    "libs.common.server",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "cryptography.x509",
    "cryptography.hazmat.primitives.asymmetric.rsa",
    "cryptography.hazmat.primitives.asymmetric.padding",
    "cryptography.hazmat.primitives.ciphers",
    "tenacity",
    "uvicorn",
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.websockets.auto",
    "uvloop",
    # Loaded later by every process, at start-up or on its first call: pydantic's v1 layer (FastAPI's checks),
    # httpx's transport (httpcore, h11, anyio's asyncio backend, certifi), the IDNA codec.
    "pydantic.v1",
    "httpcore",
    "h11",
    "anyio._backends._asyncio",
    "anyio.streams.tls",
    "certifi",
    "encodings.idna",
)
CHILD_EXIT_ON_FAILURE = 1


def preload(modules: Iterable[str] = PRELOAD) -> None:
    """Import `modules` in this process and freeze every object so far out of the garbage collector.

    Frozen objects sit in a permanent generation no collection visits: a forked child's collections then neither
    walk nor write their pages (a collection touches each object's header), so those pages stay shared with the
    parent instead of being copied into every child."""
    for name in modules:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def fork_refusal() -> str | None:
    """Why this process must not fork now (None: it may): a thread other than this one, or a running event loop."""
    if threading.active_count() > 1:
        return f"{threading.active_count()} threads run"
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop()
        return "an event loop runs"
    return None


@dataclass(frozen=True)
class Fork:
    """A child just forked: its pid and the read end of its stdout+stderr pipe (owned by the caller)."""

    pid: int
    output_fd: int


def fork_module(
    module: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    close_fds: Iterable[int] = (),
    parent_death: signal.Signals = signal.SIGTERM,
) -> Fork:
    """Fork a child that runs `python -m module *args` with `env` in `cwd`, its output on a new pipe.

    `close_fds`: descriptors of this process the child must not keep (the read ends of earlier forks' pipes).
    Raises RuntimeError when this process must not fork (`fork_refusal`)."""
    refusal = fork_refusal()
    if refusal:
        raise RuntimeError(f"cannot fork {module}: {refusal}")
    read_fd, write_fd = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read_fd)
            for fd in close_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            _run_as_main(module, list(args), dict(env), cwd, write_fd, parent, parent_death)
        finally:
            os._exit(CHILD_EXIT_ON_FAILURE)
    os.close(write_fd)
    return Fork(pid, read_fd)


def command_line(module: str, args: Sequence[str]) -> str:
    """What a forked child's command line reads: the exec's `<python> -m <module> <args…>`, space-separated."""
    return " ".join([sys.executable, "-m", module, *args])


def module_of(cmdline: bytes) -> str | None:
    """The module of a `python -m <module>` process from its `/proc/<pid>/cmdline`: NUL-separated when exec'd,
    one space-separated string when forked (`setproctitle`)."""
    argv = cmdline.replace(b"\0", b" ").decode(errors="replace").split()
    return argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None


def _run_as_main(
    module: str,
    args: list[str],
    env: dict[str, str],
    cwd: Path,
    output_fd: int,
    parent: int,
    parent_death: signal.Signals,
) -> NoReturn:
    """The child's whole life: become `python -m module *args`, run it, exit as the interpreter would."""
    status = CHILD_EXIT_ON_FAILURE
    try:
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        parent_death_signal(parent_death)()  # also its own process group, as the exec path's preexec_fn
        if os.getppid() != parent:  # the parent died before the signal was armed: nobody would stop this child
            os._exit(CHILD_EXIT_ON_FAILURE)
        _set_title(module, args)  # first: setproctitle finds the memory it rewrites through the inherited environ
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        for path in reversed(env.get("PYTHONPATH", "").split(os.pathsep)):
            if path and path not in sys.path:
                sys.path.insert(0, path)
        _write_through_stdio()
        sys.argv = [module, *args]  # runpy puts the module's file in argv[0], as `-m` does
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exit_:
        status = _exit_status(exit_.code)
    except KeyboardInterrupt:
        status = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        status = CHILD_EXIT_ON_FAILURE
    _finalize()
    os._exit(status)


def _write_through_stdio() -> None:
    """New stdout and stderr on descriptors 1 and 2 (now the pipe), writing through as `PYTHONUNBUFFERED=1`."""
    import io

    for fd, name, errors in ((1, "stdout", "strict"), (2, "stderr", "backslashreplace")):
        stream = io.TextIOWrapper(
            io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors=errors, line_buffering=False, write_through=True
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _set_title(module: str, args: Sequence[str]) -> None:
    """The command line `ps` and /proc show: the exec's; the short name (`comm`) the interpreter's, as exec'd."""
    import setproctitle

    setproctitle.setproctitle(command_line(module, args))
    setproctitle.setthreadtitle(Path(sys.executable).name)


def _exit_status(code: object) -> int:
    """The exit status `python -m` gives a SystemExit's code: None 0, an int itself, anything else printed, 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _finalize() -> None:
    """What the interpreter does at exit before it tears down: join non-daemon threads, run atexit, flush."""
    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's own call at exit
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()


class ForkedProcess:
    """A forked child in the parent's event loop, with what the launcher uses of `asyncio.subprocess.Process`:
    `pid`, `returncode` (negative: killed by that signal), `stdout` (its output, lines), `terminate`, `kill`,
    `send_signal`, `wait`. Reaped through a pidfd the loop watches, so no thread waits per child."""

    def __init__(self, fork: Fork) -> None:
        self.pid = fork.pid
        self.returncode: int | None = None
        self.stdout: asyncio.StreamReader | None = None  # set by `adopt`, in the loop
        self._output_fd = fork.output_fd
        self._exited = asyncio.Event()
        self._pidfd = -1

    async def adopt(self) -> ForkedProcess:
        """Start reading the child's output and watching its exit in the running loop."""
        loop = asyncio.get_running_loop()
        self.stdout = asyncio.StreamReader()
        pipe = os.fdopen(self._output_fd, "rb", buffering=0)
        reader = self.stdout
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        self._pidfd = os.pidfd_open(self.pid)
        loop.add_reader(self._pidfd, self._reap)
        self._reap()  # it may have exited already
        return self

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: no status to report
            pid, status = self.pid, 0
        if pid == 0:
            return
        self.returncode = os.waitstatus_to_exitcode(status)
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._exited.set()

    def send_signal(self, sig: int) -> None:
        """Signal the child unless it has been reaped (its pid may since be another process's)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode
