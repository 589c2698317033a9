"""Gateway tests import the SDK from its source folder (it is its own package, not installed here)."""

from __future__ import annotations

import sys
from pathlib import Path

SDK_PATH = str(Path(__file__).resolve().parents[2] / "sdk" / "python")
if SDK_PATH not in sys.path:
    sys.path.insert(0, SDK_PATH)
