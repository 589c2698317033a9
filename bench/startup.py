"""Start-up and idle: warm `make run` to ready, and what the platform costs at rest, per process.

    python -m bench.startup [--runs 3] [--settle-seconds 20] [--idle-seconds 30] [--imports] [--env NAME=VALUE]

Runs the real launcher (`python -m deploy.launcher run`) as the launcher tests do (free ports, a temporary data
dir, every process including the sandboxes). The first start is cold (a fresh data dir: initdb, databases,
every migration); then `--runs` warm starts on the same data dir, as a second `make run` is. For each start it
prints the launcher's own "ready in … s" (from its process's start, its imports included, since the fifth pass
of docs/performance.md; before, from after its imports), the CPU seconds all the platform's processes spent until
then (the launcher, PostgreSQL with its backends, the broker, every service: on a quiet 2-core machine a start
cannot take less than half of it), and its timeline (shared stack imported, processes forked, PostgreSQL up,
databases migrated, broker ready, each process ready: the `+…s` of `logs/launcher.log`).

After the last warm start has settled for `--settle-seconds`, the platform at rest over `--idle-seconds`: CPU
(percent of one core, /proc utime+stime), RSS and PSS (MiB) of every process; PostgreSQL is the postmaster with
its backends. RSS counts a page shared by several processes (PostgreSQL's shared buffers, a forked backend's
code) once per process; PSS splits it between them, so PSS sums to the memory the platform really holds.

`--imports` also measures, in a fresh interpreter each, the CPU seconds of importing every process's app module
(`python -c "import services.cashier.app"`): the part of a start that is the same on every machine.

The load average is printed with every figure: the machine may be shared. Last line: one JSON object
(`cold_ready_s`, `cold_cpu_s`, `warm_ready_s`, `warm_cpu_s`, `idle_cpu_pct`, `idle_rss_mib`, `idle_pss_mib`,
`per_process`: {name: [% of a core, RSS, PSS]}, `load_avg_1m`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.e2e_payments import (
    Launcher,
    Processes,
    children_of,
    cpu_delta,
    cpu_seconds,
    load_avg,
    proc_mib,
    rss_mib,
)
from libs.common.services import FRONTENDS, REPO_ROOT, SERVICES

TIMELINE = re.compile(r"\+(?P<at>[\d.]+)s (?P<what>.*)")


def pss_mib(pid: int) -> float:
    """Proportional set size: each shared page divided among the processes mapping it."""
    return proc_mib(pid, "smaps_rollup", "Pss:")


def memory(processes: Processes) -> dict[str, tuple[float, float]]:
    """{process: (RSS MiB, PSS MiB)}; "postgres" sums the postmaster and its backends."""
    figures = {name: (rss_mib(pid), pss_mib(pid)) for name, pid in processes.pids.items()}
    if processes.postmaster:
        pids = [processes.postmaster, *children_of(processes.postmaster)]
        figures["postgres"] = (sum(rss_mib(p) for p in pids), sum(pss_mib(p) for p in pids))
    return figures


def timeline(data_dir: Path, since: int) -> list[tuple[float, str]]:
    """The launcher's `+…s message` lines of logs/launcher.log written after byte `since` (this start's)."""
    text = (data_dir / "logs" / "launcher.log").read_text(errors="replace")[since:]
    found = []
    for line in text.splitlines():
        match = TIMELINE.search(line)
        if match and "\x1b" not in match["what"]:
            found.append((float(match["at"]), match["what"][:110]))
    return found


def start(data_dir: Path, label: str, env: dict[str, str]) -> tuple[Launcher, float]:
    """A start of the launcher on `data_dir`, and the CPU seconds all its processes spent until its summary."""
    log = data_dir / "logs" / "launcher.log"
    since = log.stat().st_size if log.exists() else 0
    load = load_avg()
    launcher = Launcher(data_dir, env)
    processes = Processes(launcher.proc.pid, data_dir)
    processes.refresh()
    # Every process is this start's own (a warm start starts PostgreSQL and the broker again too); the launcher
    # counts with its reaped children (initdb, pg_ctl). Up to the summary: ready, then seeded.
    per_process = processes.cpu() | {"launcher": cpu_seconds(launcher.proc.pid, with_children=True)}
    cpu = sum(per_process.values())
    print(
        f"\n{label}: ready in {launcher.ready_s:.1f} s (load {load:.1f} → {load_avg():.1f}); "
        f"{cpu:.1f} CPU-s in all processes until ready and seeded:",
        flush=True,
    )
    print(
        "  " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(per_process.items(), key=lambda i: -i[1]))
    )
    for at, what in timeline(data_dir, since):
        print(f"  +{at:5.1f}s  {what}")
    return launcher, cpu


def import_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of `import <module>.app` in a fresh interpreter, per process kind."""
    modules = {name: f"{spec.module}.app" for name, spec in {**SERVICES, **FRONTENDS}.items()}
    modules["sandboxes"] = "sandboxes.__main__"
    code = "import resource, importlib, sys; importlib.import_module(sys.argv[1]); u = resource.getrusage(0); "
    code += "print(u.ru_utime + u.ru_stime)"
    figures = {}
    for name, module in modules.items():
        out = subprocess.run(
            [sys.executable, "-c", code, module], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
        figures[name] = float(out.stdout.split()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="warm starts after the cold one")
    parser.add_argument("--settle-seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--imports", action="store_true", help="also the CPU of importing each process's app")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the platform (repeatable)"
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    data_dir = Path(tempfile.mkdtemp(prefix="juhe-bench-startup-"))
    result: dict[str, object] = {}
    try:
        if args.imports:
            print(f"import CPU seconds (load {load_avg():.1f}):")
            figures = import_seconds()
            for name, seconds in figures.items():
                print(f"  {name:12} {seconds:5.2f}")
            result["import_cpu_s"] = {k: round(v, 2) for k, v in figures.items()}
        launcher, cpu = start(data_dir, "cold start", env)
        result |= {"cold_ready_s": launcher.ready_s, "cold_cpu_s": round(cpu, 1)}
        warm: list[float] = []
        warm_cpu: list[float] = []
        for run in range(1, args.runs + 1):
            launcher.stop()
            launcher, cpu = start(data_dir, f"warm start {run}", env)
            warm.append(launcher.ready_s)
            warm_cpu.append(round(cpu, 1))
        result |= {"warm_ready_s": warm, "warm_cpu_s": warm_cpu}
        try:
            processes = Processes(launcher.proc.pid, data_dir)
            time.sleep(args.settle_seconds)  # the measured rest itself, not a wait for a condition
            processes.refresh()
            load = load_avg()
            before, t0 = processes.cpu(), time.perf_counter()
            time.sleep(args.idle_seconds)  # the measured interval
            elapsed = time.perf_counter() - t0
            pct = {k: 100 * v / elapsed for k, v in cpu_delta(before, processes.cpu()).items()}
            mem = memory(processes)
            print(
                f"\nidle over {elapsed:.0f} s after {args.settle_seconds:.0f} s of rest"
                f" (load {load:.1f} → {load_avg():.1f})"
            )
            print(f"{'process':12} {'% of a core':>11} {'RSS MiB':>8} {'PSS MiB':>8}")
            for name in sorted(pct, key=lambda n: -pct[n]):
                rss, pss = mem.get(name, (0.0, 0.0))
                print(f"{name:12} {pct[name]:11.2f} {rss:8.0f} {pss:8.0f}")
            total_rss, total_pss = sum(r for r, _ in mem.values()), sum(p for _, p in mem.values())
            print(f"{'all':12} {sum(pct.values()):11.2f} {total_rss:8.0f} {total_pss:8.0f}")
            result |= {
                "idle_cpu_pct": round(sum(pct.values()), 2),
                "idle_rss_mib": round(total_rss),
                "idle_pss_mib": round(total_pss),
                "per_process": {
                    k: [round(pct[k], 2), round(mem.get(k, (0, 0))[0]), round(mem.get(k, (0, 0))[1])] for k in pct
                },
                "load_avg_1m": round(load, 1),
            }
        finally:
            launcher.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
