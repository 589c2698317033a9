"""Shared pieces of the tests that need settlement reachable over HTTP (bank callbacks) and real sandboxes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from libs.common.testing.infra import serve_app
from sandboxes.common.testing import SandboxProcess

WAIT_SECONDS_MAX = 15.0


def bank_sandbox(data_dir: Path, accounts: list[dict[str, str]]) -> Iterator[SandboxProcess]:
    """The bank sandbox process with these accounts, deciding fast and calling back at once."""
    env = {
        "JUHE_DATA_DIR": str(data_dir),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_BANK_PROCESS_SECONDS": "0.1",
    }
    with SandboxProcess("sandboxes.bank", port_env="JUHE_SANDBOX_BANK_PORT", env=env) as process:
        for account in accounts:
            httpx.post(process.base_url + "/control/accounts", json=account).raise_for_status()
        yield process


@asynccontextmanager
async def served(app: FastAPI, port: int) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a real port (so sandboxes can call it back); a client to it."""
    async with serve_app(app, port=port) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield client


async def eventually(check: object, what: str) -> None:
    """Wait (bounded) until the async `check()` is true: outcomes arrive by callbacks."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS_MAX
    while not await check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)
