"""Where a sandbox keeps its files: `$JUHE_DATA_DIR/sandboxes/<channel>/` (default `.juhe`)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_DIR = ".juhe"


def sandbox_data_dir(channel: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return (and create) the per-channel directory, so keys and orders survive a restart."""
    root = Path(data_dir if data_dir is not None else os.environ.get("JUHE_DATA_DIR", DEFAULT_DATA_DIR))
    path = root / "sandboxes" / channel
    path.mkdir(parents=True, exist_ok=True)
    return path


def env_float(name: str, default: float) -> float:
    """Read a float setting from the environment; a bad value is a start-up error, not a silent default."""
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)
