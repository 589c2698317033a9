"""The migration service's typed context: its settings, its clients of the ledger and of marketing, and the
runs the API started in the background, built once at start-up (the CLI builds the same for its one run).

Routes reach it through `api/deps.py` (`MigrationContextDep`); a field here replaces a string-keyed lookup,
so a missing dependency fails type checking, not a request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from libs.common.db import UnitOfWork
from libs.common.web import Runtime, context_of
from services.migration.clients.ledger import LedgerClient
from services.migration.clients.marketing import MarketingClient
from services.migration.config import Settings
from services.migration.flows.runs import Migration


@dataclass(frozen=True)
class MigrationContext:
    settings: Settings
    ledger: LedgerClient
    # Coupons go to marketing's internal import; only runs with coupons call it.
    marketing: MarketingClient
    # The runs the API works on after its answer (flows/background.py), cancelled when the service stops.
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def migration(self, uow: UnitOfWork, platform: str) -> Migration:
        """What one run of `platform` needs, with this process's clients and the configured batch sizes."""
        return Migration(
            uow=uow,
            ledger=self.ledger,
            platform=platform,
            batch_rows=self.settings.batch_rows,
            sample_size=self.settings.sample_size,
            marketing=self.marketing,
        )

    async def aclose(self) -> None:
        """Stop the background runs (each stays `running` at its last checkpoint, resumable), then the clients."""
        for task in list(self.tasks):
            task.cancel()
        await self.ledger.close()
        await self.marketing.close()


def build_migration_context(settings: Settings) -> MigrationContext:
    """The service's start-up sets it as `runtime.context` and registers `aclose` among the closers; the CLI
    builds one for its run and closes it at the end."""
    return MigrationContext(
        settings=settings,
        ledger=LedgerClient(settings.ledger_url, timeout_seconds=settings.ledger_timeout_seconds),
        marketing=MarketingClient(
            settings.marketing_url,
            timeout_seconds=settings.marketing_timeout_seconds,
            identity_secret=settings.internal_token_secret.get_secret_value(),
        ),
    )


def migration_context(runtime: Runtime) -> MigrationContext:
    return context_of(runtime, MigrationContext)
