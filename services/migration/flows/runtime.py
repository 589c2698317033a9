"""The migration process's shared pieces: the ledger client, the import directory, background runs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from libs.common.errors import Problem
from libs.common.web import Runtime
from services.migration.clients.ledger import LedgerClient
from services.migration.clients.marketing import MarketingClient
from services.migration.config import Settings
from services.migration.domain import errors as e
from services.migration.domain.rows import Kind
from services.migration.flows import runs as flow

LEDGER_EXTRA = "migration_ledger"
MARKETING_EXTRA = "migration_marketing"
TASKS_EXTRA = "migration_tasks"
log = logging.getLogger("juhe.migration")


async def on_startup(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    client = LedgerClient(settings.ledger_url, timeout_seconds=settings.ledger_timeout_seconds)
    runtime.extras[LEDGER_EXTRA] = client
    marketing = MarketingClient(settings.marketing_url, timeout_seconds=settings.marketing_timeout_seconds,
                                identity_secret=settings.internal_token_secret.get_secret_value())  # fmt: skip
    runtime.extras[MARKETING_EXTRA] = marketing
    runtime.extras[TASKS_EXTRA] = set()

    async def close() -> None:
        for task in list(runtime.extras[TASKS_EXTRA]):
            task.cancel()
        await client.close()
        await marketing.close()

    runtime.extras.setdefault("closers", []).append(close)


def migration_of(runtime: Runtime, platform: str) -> flow.Migration:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    return flow.Migration(
        uow=runtime.uow, ledger=runtime.extras[LEDGER_EXTRA], platform=platform, batch_rows=settings.batch_rows,
        sample_size=settings.sample_size, marketing=runtime.extras[MARKETING_EXTRA],
    )  # fmt: skip


def source_path(runtime: Runtime, name: str | None) -> Path | None:
    """A file named by the API must be inside the import directory: no path escapes it."""
    if name is None:
        return None
    settings = runtime.settings
    assert isinstance(settings, Settings)
    if settings.import_dir is None:
        raise Problem(e.SOURCE_INVALID, "this service has no import directory (JUHE_MIGRATION_IMPORT_DIR)")
    root = Path(settings.import_dir).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise Problem(e.SOURCE_INVALID, f"{name}: no such file in the import directory")
    return path


def run_in_background(runtime: Runtime, m: flow.Migration, run_id: str, paths: dict[Kind, Path]) -> None:
    """The run goes on after the answer; a process that dies leaves it `running` at its last checkpoint, and
    the same request (or the CLI) resumes it."""

    async def work() -> None:
        try:
            await flow.resume(m, run_id, paths=paths)
        except Problem as exc:
            log.warning("migration run %s stopped: %s %s", run_id, exc.spec.code, exc.detail)
        except Exception:
            log.exception("migration run %s stopped", run_id)

    tasks: set[asyncio.Task[None]] = runtime.extras[TASKS_EXTRA]
    task = asyncio.create_task(work(), name=f"migration-{run_id}")
    tasks.add(task)
    task.add_done_callback(tasks.discard)
