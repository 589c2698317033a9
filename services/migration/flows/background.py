"""Runs started through the API: the files they name, inside the import directory, and the work after the
answer (202)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from libs.common.errors import Problem
from services.migration.config import Settings
from services.migration.domain import errors as e
from services.migration.domain.rows import Kind
from services.migration.flows import runs as flow

log = logging.getLogger("juhe.migration")


def source_path(settings: Settings, name: str | None) -> Path | None:
    """A file named by the API must be inside the import directory: no path escapes it."""
    if name is None:
        return None
    if settings.import_dir is None:
        raise Problem(e.SOURCE_INVALID, "this service has no import directory (JUHE_MIGRATION_IMPORT_DIR)")
    root = Path(settings.import_dir).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise Problem(e.SOURCE_INVALID, f"{name}: no such file in the import directory")
    return path


def run_in_background(tasks: set[asyncio.Task[None]], m: flow.Migration, run_id: str, paths: dict[Kind, Path]) -> None:
    """The run goes on after the answer, its task kept in `tasks` (the service's context) until it ends; a
    process that dies leaves it `running` at its last checkpoint, and the same request (or the CLI) resumes it."""

    async def work() -> None:
        try:
            await flow.resume(m, run_id, paths=paths)
        except Problem as exc:
            log.warning("migration run %s stopped: %s %s", run_id, exc.spec.code, exc.detail)
        except Exception:
            log.exception("migration run %s stopped", run_id)

    task = asyncio.create_task(work(), name=f"migration-{run_id}")
    tasks.add(task)
    task.add_done_callback(tasks.discard)
