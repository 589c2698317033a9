"""Import once, fork many (libs/common/prefork.py): a forked child is what `python -m <module>` would have been —
its module as `__main__`, its arguments, environment, directory and command line, its output on its own pipe, its
exit status — and inherits none of the parent's pipes, pending output or random state.

The forking runs in a fresh interpreter (a driver script): pytest's own process may run threads, which a fork must
not inherit (`fork_refusal`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from libs.common.prefork import command_line, fork_module, fork_refusal, module_of
from libs.common.services import REPO_ROOT

PROBE = """
import atexit, json, os, random, signal, sys, threading

if sys.argv[1:] == ["wait"]:
    print("waiting", flush=True)
    signal.pause()  # until the driver terminates it
links = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        links[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # the listing's own descriptor, closed since
        pass
atexit.register(lambda: print("atexit ran"))
print(json.dumps({
    "name": __name__, "argv": sys.argv[1:], "cwd": os.getcwd(), "env": os.environ.get("PROBE_SETTING"),
    "home": os.environ.get("HOME"), "cmdline": open("/proc/self/cmdline", "rb").read().decode(errors="replace"),
    "links": links, "random": random.random(), "ppid": os.getppid(), "pgid": os.getpgid(0), "pid": os.getpid(),
}))
print("to stderr", file=sys.stderr)
raise SystemExit(3)
"""

DRIVER = """
import asyncio, json, random, sys
from pathlib import Path
from libs.common.prefork import ForkedProcess, fork_module

here = Path(sys.argv[1])
env = {"PYTHONPATH": str(here), "PROBE_SETTING": "forked"}
sys.stdout.write("the parent's pending text\\n")  # buffered (a pipe): must be written once, not once per fork
random.seed(7)
waiting = fork_module("probe", ["wait"], env=env, cwd=here)
probe = fork_module("probe", ["one", "two"], env=env, cwd=here, close_fds=[waiting.output_fd])


async def main() -> dict[str, object]:
    first = await ForkedProcess(waiting).adopt()
    second = await ForkedProcess(probe).adopt()
    output = (await second.stdout.read()).decode()
    code = await second.wait()
    assert (await first.stdout.readline()) == b"waiting\\n"
    first.terminate()
    return {"output": output, "code": code, "terminated": await first.wait(), "waiting_pid": first.pid,
            "parent_random": random.random()}


print(json.dumps(asyncio.run(main())))
"""


def test_a_forked_child_is_what_python_dash_m_would_have_been(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER))
    run = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("the parent's pending text") == 1
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["code"] == 3, "SystemExit(3) is the exit status, as with python -m"
    assert result["terminated"] == -15, "terminate() is SIGTERM; a death by signal is negative, as asyncio's"

    lines = result["output"].splitlines()
    seen = json.loads(lines[0])
    assert "to stderr" in lines and lines[-1] == "atexit ran", "stderr on the same pipe; atexit runs at exit"
    assert seen["name"] == "__main__" and seen["argv"] == ["one", "two"]
    assert seen["cwd"] == str(tmp_path)
    assert seen["env"] == "forked" and seen["home"] is None, "exactly the given environment"
    assert module_of(seen["cmdline"].encode()) == "probe"
    assert seen["cmdline"].rstrip("\0") == command_line("probe", ["one", "two"])
    assert seen["pgid"] == seen["pid"], "its own process group: a Ctrl-C in the terminal reaches the parent only"
    assert seen["random"] != result["parent_random"], "the global generator is reseeded in the child"
    pipes = {fd: link for fd, link in seen["links"].items() if link.startswith(("pipe:", "socket:"))}
    assert set(pipes) == {"1", "2"} and pipes["1"] == pipes["2"], f"only its own output pipe, got {pipes}"


def test_no_fork_while_another_thread_runs() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert fork_refusal() is not None
        with pytest.raises(RuntimeError, match="threads run"):
            fork_module("probe", [], env={}, cwd=Path.cwd())
    finally:
        stop.set()
        thread.join()


def test_module_of_reads_exec_and_forked_command_lines() -> None:
    assert module_of(b"/usr/bin/python\0-m\0services.cashier\0") == "services.cashier"
    assert module_of(b"/usr/bin/python -m sandboxes wechatpay alipay\0\0\0") == "sandboxes"
    assert module_of(b"/usr/bin/python\0-c\0pass\0") is None
    assert module_of(b"/usr/bin/python -m\0") is None
