"""Dependencies of the ledger routes: the service's typed context (context.py) and what routes take from it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from libs.common.web import get_runtime
from services.ledger.config import Settings
from services.ledger.context import LedgerContext, ledger_context
from services.ledger.store.writer import LedgerWriter


async def get_context(request: Request) -> LedgerContext:
    """The service's typed context. Async on purpose: FastAPI runs a plain `def` dependency in its thread pool."""
    return ledger_context(get_runtime(request))


LedgerContextDep = Annotated[LedgerContext, Depends(get_context)]


async def get_writer(context: LedgerContextDep) -> LedgerWriter:
    return context.writer


async def get_settings(context: LedgerContextDep) -> Settings:
    return context.settings


WriterDep = Annotated[LedgerWriter, Depends(get_writer)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
