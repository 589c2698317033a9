"""The pages' half of the one public origin: `/wallet`, `/checkout`, `/pay`, `/static`, `/console` are
forwarded to Juhe's web process as they are, so browsers see one address for pages and API.

The route that sends them here is `api/routes/web_pages.py`. The web process does
its own authentication (sealed session cookie), CSRF and rate limits, and reaches the platform only through
this gateway's public API like any client; nothing here vouches for anyone: no `X-Juhe-*` header passes,
no identity is attached. The browser's address and the public scheme/host are passed as `X-Forwarded-*`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.domain.errors import UPSTREAM_TIMEOUT, UPSTREAM_UNAVAILABLE
from libs.common.errors import PAYLOAD_TOO_LARGE, Problem

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
)


class WebPages:
    def __init__(self, web_url: str, *, timeout_seconds: float, body_size_max_bytes: int) -> None:
        self.client = httpx.AsyncClient(base_url=web_url, timeout=timeout_seconds, follow_redirects=False)
        self.body_size_max_bytes = body_size_max_bytes

    async def close(self) -> None:
        await self.client.aclose()

    async def forward(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > self.body_size_max_bytes:
            raise Problem(PAYLOAD_TOO_LARGE, f"at most {self.body_size_max_bytes} bytes")
        headers = [
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in HOP_BY_HOP and not k.lower().startswith("x-juhe-")
        ]
        headers += [
            ("x-forwarded-for", request.client.host if request.client else ""),
            ("x-forwarded-proto", request.url.scheme),
            ("x-forwarded-host", request.headers.get("host", "")),
        ]
        raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string", b"")
        url = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        if "text/event-stream" in request.headers.get("accept", ""):
            return await self._stream(request.method, url, headers, body)
        try:
            reply = await self.client.request(request.method, url, headers=headers, content=body)
        except httpx.TimeoutException as exc:
            raise Problem(UPSTREAM_TIMEOUT, "the web process did not answer in time") from exc
        except httpx.TransportError as exc:
            raise Problem(UPSTREAM_UNAVAILABLE, "the web process is unavailable") from exc
        response = Response(content=reply.content, status_code=reply.status_code)
        for key, value in reply.headers.multi_items():
            if key.lower() not in HOP_BY_HOP and key.lower() not in ("content-encoding", "date", "server"):
                response.headers.append(key, value)
        return response

    async def _stream(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> Response:
        """Server-sent events (the checkout's live status) pass through as they come, not buffered; the web
        process sends a comment line more often than the read timeout, so a quiet stream stays open."""
        try:
            reply = await self.client.send(
                self.client.build_request(method, url, headers=headers, content=body), stream=True
            )
        except httpx.TimeoutException as exc:
            raise Problem(UPSTREAM_TIMEOUT, "the web process did not answer in time") from exc
        except httpx.TransportError as exc:
            raise Problem(UPSTREAM_UNAVAILABLE, "the web process is unavailable") from exc
        kept = {
            k: v
            for k, v in reply.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() not in ("content-encoding", "date", "server")
        }

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in reply.aiter_raw():
                    yield chunk
            except httpx.HTTPError:
                return  # the web process went away mid-stream: the browser reconnects or polls

        return StreamingResponse(
            chunks(), status_code=reply.status_code, headers=kept, background=BackgroundTask(reply.aclose)
        )
