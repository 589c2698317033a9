"""The gateway's keep-alive upstream pool against a real uvicorn server over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.clients.upstream_http import (
    KeepAlivePool,
    UpstreamConnectError,
    UpstreamTimeoutError,
    UpstreamTransportError,
)
from gateway.tests.integration.servers import ThreadServer

DEAD_URL = "http://127.0.0.1:9"
peers: set[tuple[str, int]] = set()


async def echo(request: Request) -> Response:
    assert request.client is not None
    peers.add((request.client.host, request.client.port))
    body = await request.body()
    return Response(
        f"{request.method} {request.scope['raw_path'].decode()}?{request.scope['query_string'].decode()} "
        f"{request.headers.get('x-test', '')} {len(body)}",
        headers={"X-Echo": "1"},
    )


async def chunked(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two,", b"three"):
            yield part

    return StreamingResponse(parts(), media_type="text/plain")


async def slow(request: Request) -> Response:
    await asyncio.sleep(2)
    return Response("late")


async def big(request: Request) -> Response:
    return Response(b"x" * 200_000)


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadServer]:
    routes = [
        Route("/echo/{rest:path}", echo, methods=["GET", "HEAD", "POST", "DELETE"]),
        Route("/chunked", chunked),
        Route("/slow", slow),
        Route("/big", big),
    ]
    running = ThreadServer(Starlette(routes=routes)).start()
    yield running
    running.stop()


def pool(url: str, *, timeout_seconds: float = 5.0) -> KeepAlivePool:
    return KeepAlivePool(url, connections_max=4, timeout_seconds=timeout_seconds, response_bytes_max=100_000)


async def test_requests_go_out_byte_for_byte_and_connections_are_reused(server: ThreadServer) -> None:
    upstream = pool(server.base_url)
    peers.clear()
    target = "/echo/a%2Fb%20c?x=1&y=%C3%A9"
    posted = await upstream.request("POST", target, [("X-Test", "hi")], b'{"a": 1}')
    assert posted.status == 200 and ("x-echo", "1") in posted.headers
    assert posted.body == b"POST /echo/a%2Fb%20c?x=1&y=%C3%A9 hi 8"
    for _ in range(3):
        read = await upstream.request("GET", target, [], b"")
        assert read.body == b"GET /echo/a%2Fb%20c?x=1&y=%C3%A9  0"
    assert len(peers) == 1  # four exchanges, one keep-alive connection
    head = await upstream.request("HEAD", target, [], b"")
    assert head.status == 200 and head.body == b""
    await upstream.close()


async def test_chunked_bodies_are_read_whole(server: ThreadServer) -> None:
    upstream = pool(server.base_url)
    reply = await upstream.request("GET", "/chunked", [], b"")
    assert reply.body == b"one,two,three"
    assert ("transfer-encoding", "chunked") in reply.headers
    await upstream.close()


async def test_failures_are_told_apart(server: ThreadServer) -> None:
    with pytest.raises(UpstreamConnectError):
        await pool(DEAD_URL).request("POST", "/v1/payments", [], b"{}")
    with pytest.raises(UpstreamTimeoutError):
        await pool(server.base_url, timeout_seconds=0.2).request("GET", "/slow", [], b"")
    with pytest.raises(UpstreamTransportError, match="over 100000 bytes"):
        await pool(server.base_url).request("GET", "/big", [], b"")
    with pytest.raises(UpstreamTransportError):  # a header that could split the request is never written
        await pool(server.base_url).request("GET", "/echo/x", [("X-Test", "a\r\nX-Evil: 1")], b"")


async def _scripted(answer: bytes) -> tuple[asyncio.Server, str]:
    """A raw TCP server that reads one request head and answers `answer` bytes, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    return srv, f"http://127.0.0.1:{port}"


async def test_informational_answers_bodies_to_close_and_truncation() -> None:
    cases = [
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok", 201, b"ok"),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", 200, b"until the end"),
    ]
    replies = []
    for answer, status, body in cases:
        srv, url = await _scripted(answer)
        try:
            reply = await pool(url).request("POST", "/x", [], b"{}")
        finally:
            srv.close()
        assert (reply.status, reply.body) == (status, body)
        replies.append(reply)
    assert replies[0].headers == [("Content-Length", "2"), ("X-A", "b")]  # the 100's (none) are not kept
    for broken in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"garbage\r\n\r\n",
    ):
        srv, url = await _scripted(broken)
        try:
            with pytest.raises(UpstreamTransportError):
                await pool(url).request("GET", "/x", [], b"")
        finally:
            srv.close()


def test_request_heads_refuse_anything_that_could_split_a_request() -> None:
    from libs.common.keepalive import proxy_request_head as _request_head

    head = _request_head("POST", "/v1/p?q=%C3%A9", "svc:1", [("X-A", "caf\u00e9 au lait")], b"{}")
    assert head == b"POST /v1/p?q=%C3%A9 HTTP/1.1\r\nHost: svc:1\r\nX-A: caf\xe9 au lait\r\nContent-Length: 2\r\n\r\n"
    assert b"Content-Length" not in _request_head("GET", "/", "svc:1", [], b"")
    for method, target, headers in (
        ("GET /x HTTP/1.1\r\n", "/", []),
        ("GET", "/a b", []),
        ("GET", "/a\r\nX: 1", []),
        ("GET", "/", [("X-A\r\nX-B", "1")]),
        ("GET", "/", [("X-A", "1\r\nX-B: 2")]),
        ("GET", "/", [("X-A", " leading")]),
        ("GET", "/", [("X-A", "nul\x00")]),
        ("GET", "/", [("X-A", "\u20ac")]),
    ):
        with pytest.raises(httpx.LocalProtocolError):
            _request_head(method, target, "svc:1", headers, b"")
