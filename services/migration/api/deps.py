"""Dependencies shared by the migration API's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from libs.common.web import get_runtime
from services.migration.context import MigrationContext, migration_context


async def get_context(request: Request) -> MigrationContext:
    """The service's typed context (context.py). Async on purpose: FastAPI runs a plain `def` dependency in its
    thread pool."""
    return migration_context(get_runtime(request))


MigrationContextDep = Annotated[MigrationContext, Depends(get_context)]
