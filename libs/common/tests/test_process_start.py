"""How a service process starts (libs/common/runner.py, libs/common/__init__.py): the start gate it waits for
before serving, and the imports it skips (docs/performance.md, "Fourth pass")."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from libs.common.runner import START_GATE_ENV, wait_for_start_gate


def test_no_gate_named_returns_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(START_GATE_ENV, raising=False)
    wait_for_start_gate(timeout_seconds=0)  # would raise if it waited for anything


def test_an_existing_gate_returns_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    monkeypatch.setenv(START_GATE_ENV, str(gate))
    wait_for_start_gate(timeout_seconds=0)


def test_a_gate_created_while_waiting_lets_the_process_go_on(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    opener = threading.Timer(0.05, gate.touch)  # the launcher opening the gate while the process waits
    opener.start()
    try:
        wait_for_start_gate(str(gate), timeout_seconds=60, poll_seconds=0.01)
    finally:
        opener.cancel()
    assert gate.exists()


def test_a_gate_never_opened_stops_the_process(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="did not open the start gate"):
        wait_for_start_gate(str(tmp_path / "never"), timeout_seconds=0.05, poll_seconds=0.01)


def test_a_service_process_loads_no_console_extras_unless_it_renders_for_a_console() -> None:
    """httpx's CLI (click, pygments, rich) and structlog.dev's rich tracebacks stay unloaded with JSON logs; the
    developer console's renderer loads rich and formats tracebacks with it, as structlog does when it is installed."""
    probe = (
        "import sys\n"
        "import libs.common.logging as logs\n"
        "logs.configure_logging('probe')\n"
        "print(sorted(n for n in ('click', 'pygments', 'rich', 'httpx._main') if n in sys.modules))\n"
        "logs.configure_logging('probe', json=False)\n"
        "print('rich' in sys.modules, type(logs.structlog.dev.default_exception_formatter).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).parents[3],
    ).stdout.splitlines()
    assert out == ["[]", "True RichTracebackFormatter"]
