"""Server-sent events from the web process (the checkout's live status) pass the gateway as they come: the
first event reaches the browser while the stream is still open, not when it ends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from gateway.tests.integration.conftest import Stack, StackFactory
from gateway.tests.integration.servers import ThreadServer


async def test_event_streams_are_forwarded_unbuffered(make_stack: StackFactory) -> None:
    pages = FastAPI()
    release = threading.Event()  # set by the test only once it has read the first event
    finished = threading.Event()  # the web process's stream has ended

    @pages.get("/checkout/{token}/events")
    async def events(token: str) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            yield b'event: status\ndata: {"status": "open"}\n\n'
            for _ in range(600):  # at most 30 s: a buffering gateway makes the test fail, never hang
                if release.is_set():
                    break
                await asyncio.sleep(0.05)
                yield b": waiting\n\n"
            yield b'event: status\ndata: {"status": "completed"}\n\n'
            finished.set()

        return StreamingResponse(stream(), media_type="text/event-stream")

    web = ThreadServer(pages).start()
    try:
        stack: Stack = await make_stack(web_url=web.base_url)
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as raw:
            headers = {"Accept": "text/event-stream"}
            async with raw.stream("GET", "/checkout/cst_test/events", headers=headers) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.aiter_lines()
                assert await anext(lines) == "event: status"
                assert await anext(lines) == 'data: {"status": "open"}'
                assert not finished.is_set()  # read while the web process was still streaming
                release.set()
                rest = [line async for line in lines]
        assert 'data: {"status": "completed"}' in rest
    finally:
        release.set()
        web.stop()
