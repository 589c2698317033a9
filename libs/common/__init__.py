"""Juhe's shared library.

Every service process imports this package first (`python -m services.<svc>` runs `libs.common.runner`), so this
is where httpx and structlog are first imported, without their optional console extras: httpx's command-line
`main` (click, pygments, rich) and structlog.dev's rich tracebacks. Loaded only because they are installed (rich
for the migration CLI, schemathesis, import-linter), they were ~6 % of a service's import time and serve no
service: its logs are JSON. A None entry in sys.modules makes those imports fail as if the packages were absent,
for this first import only; the developer console's renderer loads rich again (`libs.common.logging`).
"""

import sys as _sys

_CONSOLE_EXTRAS = ("click", "rich")


def _import_without_console_extras() -> None:
    if any(name in _sys.modules for name in ("httpx", "structlog", *_CONSOLE_EXTRAS)):
        return  # already imported by this process: nothing to save any more
    for name in _CONSOLE_EXTRAS:
        _sys.modules[name] = None  # type: ignore[assignment]  # typeshed types values as modules; None blocks one
    try:
        import httpx  # noqa: F401
        import structlog  # noqa: F401
    finally:
        for name in _CONSOLE_EXTRAS:
            del _sys.modules[name]


_import_without_console_extras()
