"""`/v1/migrations/runs`: start a dry or real run, read it with its report, finalise it, reverse it.

Platform operators only (the gateway forwards `/v1/migrations` to platform identities only); every run
belongs to the caller's platform and is invisible to others.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from libs.common.errors import FORBIDDEN, Problem
from libs.common.internal_auth import InternalIdentity
from libs.common.paging import KnownQueryOnly, page_limit
from libs.common.web import UowDep
from services.migration.api.deps import MigrationContextDep
from services.migration.api.schemas import RunCreateRequest, RunListResponse, RunResponse
from services.migration.flows import runs as flow
from services.migration.flows.background import run_in_background, source_path
from services.migration.store import runs as store

router = APIRouter(prefix="/v1/migrations/runs", tags=["migrations"])


def platform_of(identity: InternalIdentity) -> str:
    if identity.kind not in ("platform", "service"):
        raise Problem(FORBIDDEN, "migrations are run by platform operators")
    return identity.platform or "default"


PlatformDep = Annotated[str, Depends(platform_of)]


def run_response(run: Any, report: dict[str, Any] | None = None) -> RunResponse:
    return RunResponse(
        id=run["id"],
        platform=run["platform"],
        mode=run["mode"],
        status=run["status"],
        created_at=run["created_at"],
        updated_at=run["updated_at"],
        finalised_at=run["finalised_at"],
        report=report or run["report"],
    )


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def create_run(
    body: RunCreateRequest, context: MigrationContextDep, uow: UowDep, platform: PlatformDep, response: Response
) -> RunResponse:
    """Records the run and works on it in the background (202); the same real run again resumes it."""
    m = context.migration(uow, platform)
    s = context.settings
    files = flow.RunFiles(
        merchants=source_path(s, body.merchants),
        persons=source_path(s, body.persons),
        balances=source_path(s, body.balances),
        control=source_path(s, body.control),
        encoding=body.encoding,
        coupons=source_path(s, body.coupons),
    )
    run_id, paths = await flow.prepare(m, files, dry_run=body.dry_run)
    run_in_background(context.tasks, m, run_id, paths)
    await asyncio.sleep(0)  # let the task take the run's lock before the answer
    run, report = await flow.report_of(m, run_id)
    return run_response(run, report)


@router.get("", dependencies=[KnownQueryOnly])
async def list_runs(
    uow: UowDep,
    platform: PlatformDep,
    limit: Annotated[int, Depends(page_limit())],
    cursor: Annotated[str | None, Query(pattern=r"^mig_[0-9a-z]+$", max_length=64)] = None,
) -> RunListResponse:
    async with uow.read() as conn:
        rows = await store.list_runs(conn, platform=platform, limit=limit + 1, before=cursor)
    return RunListResponse.of(rows, limit, item=run_response, cursor_of=lambda run: run.id)


@router.get("/{run_id}")
async def read_run(run_id: str, context: MigrationContextDep, uow: UowDep, platform: PlatformDep) -> RunResponse:
    run, report = await flow.report_of(context.migration(uow, platform), run_id)
    return run_response(run, report)


@router.post("/{run_id}/finalise")
async def finalise_run(run_id: str, context: MigrationContextDep, uow: UowDep, platform: PlatformDep) -> RunResponse:
    m = context.migration(uow, platform)
    await flow.finalise(m, run_id)
    run, report = await flow.report_of(m, run_id)
    return run_response(run, report)


@router.post("/{run_id}/reverse")
async def reverse_run(run_id: str, context: MigrationContextDep, uow: UowDep, platform: PlatformDep) -> RunResponse:
    m = context.migration(uow, platform)
    await flow.reverse(m, run_id)
    run, report = await flow.report_of(m, run_id)
    return run_response(run, report)
