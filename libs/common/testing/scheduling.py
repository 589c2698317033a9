"""How `make test`'s xdist workers share the files: heaviest first, and files sharing a platform together.

`--dist loadfile` sends whole files to a worker. By default xdist orders them by their number of tests, which
put the files that start whole platforms (one or two tests of a minute or two each) last: the run's end then
waited on one worker's last heavy file while the other sat idle. This scheduler hands out the heaviest work
first (longest-processing-time first, what packs two workers best) by an estimate read from each file's
source (`cost`), and keeps the files that use one session-scoped platform (`SHARED_PLATFORM_FIXTURES`) in
one work unit, so that platform starts once, on one worker.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

from xdist.scheduler import LoadFileScheduling

from libs.common.services import REPO_ROOT

# Estimated seconds by what a file's source starts (the first that matches): the launcher (every process; its
# helpers live in tests/e2e/test_launcher.py) or a browser over services, once per file plus per test; service
# processes, per test; anything else (in-process apps, the test database), a second a test.
STARTS_PLATFORM = ("_start_running(", "tests.e2e.test_launcher import", "chromium")
STARTS_PROCESSES = ("service_processes", "ServiceProcess(", "pytest.mark.e2e")
PLATFORM_SECONDS, PLATFORM_SECONDS_PER_TEST = 90.0, 10.0
PROCESSES_SECONDS_PER_TEST = 20.0
SECONDS_PER_TEST = 1.0
# A test file that asks for a shared session platform (tests/e2e/conftest.py) by its fixture's name.
SHARED_PLATFORM_FIXTURES = ("demo_platform",)


@functools.cache
def _source(path: str) -> str:
    try:
        return (REPO_ROOT / path).read_text(errors="replace")
    except OSError:  # a package's __init__ doctest, a generated node: no fixed cost known
        return ""


def shared_platform(path: str) -> str | None:
    """The shared platform fixture a test file asks for (a parameter of that name), if any."""
    source = _source(path)
    return next((name for name in SHARED_PLATFORM_FIXTURES if re.search(rf"[(,]\s*{name}\s*[:,)]", source)), None)


def cost(paths: set[str], tests: int) -> float:
    """Estimated seconds of a work unit (one file, or the files sharing a platform, which starts once). Only
    the order matters: the estimate must rank a platform file above one of service processes, and that one
    above a file of unit or database tests, nothing finer."""
    per_test = SECONDS_PER_TEST
    sources = [_source(path) for path in paths]
    if any(shared_platform(path) for path in paths) or any(m in s for s in sources for m in STARTS_PLATFORM):
        return PLATFORM_SECONDS + PLATFORM_SECONDS_PER_TEST * tests
    if any(marker in source for source in sources for marker in STARTS_PROCESSES):
        per_test = PROCESSES_SECONDS_PER_TEST
    return per_test * tests


class _HeaviestFirst(OrderedDict[str, dict[str, bool]]):
    """xdist's work queue, popping the heaviest unit first (the scheduler only ever pops from the front)."""

    def __init__(self, files_of: dict[str, set[str]]) -> None:
        super().__init__()
        self.files_of = files_of

    def popitem(self, last: bool = True) -> tuple[str, dict[str, bool]]:
        if last:
            return super().popitem(last=True)
        scope = max(self, key=lambda s: cost(self.files_of.get(s, {s}), len(self[s])))
        return scope, self.pop(scope)


class HeaviestFirstScheduling(LoadFileScheduling):  # type: ignore[misc]  # xdist ships no types
    """`--dist loadfile`, with the queue handed out heaviest first and shared-platform files in one unit."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self.files_of: dict[str, set[str]] = {}
        self.workqueue = _HeaviestFirst(self.files_of)

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        fixture = shared_platform(path) if path.endswith(".py") else None
        scope = f"{Path(path).parent}[{fixture}]" if fixture else path
        self.files_of.setdefault(scope, set()).add(path)
        return scope
