"""The SDK is its own package: its tests import it from this folder.

The end-to-end tests reuse the gateway's test stack (`make_stack`: a gateway on a fresh migrated
database with the demo keys seeded) and put the real services behind it.
"""

from __future__ import annotations

import sys
from pathlib import Path

SDK_PATH = str(Path(__file__).resolve().parents[1])
if SDK_PATH not in sys.path:
    sys.path.insert(0, SDK_PATH)

from gateway.tests.integration.conftest import make_stack  # noqa: E402  (a fixture, used by name)

__all__ = ["make_stack"]
