"""Test mode and live mode (docs/test-mode.md; docs/architecture.md §4 rule 9, "Test and live never mix").

Every API key is `test` or `live`; the gateway forwards the authenticating key's mode inside the signed
identity token (`internal_auth`), and services keep the two apart: a test key reaches only sandbox channel
configurations and sees only test objects (`livemode: false`), a live key only real channels and live objects.
Pure: no framework, so domain code may import it.
"""

from __future__ import annotations

from typing import Literal

Mode = Literal["test", "live"]
MODES: tuple[Mode, ...] = ("test", "live")


def livemode_of(mode: Mode) -> bool:
    return mode == "live"


def mode_of(livemode: bool) -> Mode:
    return "live" if livemode else "test"
