"""The SDK is its own package: its tests import it from this folder."""

from __future__ import annotations

import sys
from pathlib import Path

SDK_PATH = str(Path(__file__).resolve().parents[1])
if SDK_PATH not in sys.path:
    sys.path.insert(0, SDK_PATH)
