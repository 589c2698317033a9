"""Crash points for tests that kill a process at the worst moment.

`crash_point("inbox.after_commit")` exits the process immediately (no cleanup, like SIGKILL) when
the environment variable JUHE_CRASH_AT names that point. Unset in every real deployment, so it costs
one dictionary lookup.
"""

from __future__ import annotations

import os
import sys

CRASH_EXIT_CODE = 86


def crash_point(name: str) -> None:
    if os.environ.get("JUHE_CRASH_AT") == name:
        sys.stdout.write(f"crash point {name} reached: exiting\n")
        sys.stdout.flush()
        os._exit(CRASH_EXIT_CODE)
