"""The notifications' keep-alive client against real sockets: reuse, a connection closed while idle, bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from sandboxes.common.http_client import KeepAliveClient, ReplyTimeout, TransportError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw HTTP server on a free port: the base URL, and how many connections it accepted (appended to)."""
    accepted: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", accepted


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """(head, body) of one request, None at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
    return head, await reader.readexactly(length)


async def _answer_success(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, requests: list[bytes]) -> None:
    while (request := await _read_request(reader)) is not None:
        requests.append(request[0] + request[1])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess")
        await writer.drain()


async def test_two_posts_share_one_connection_and_carry_the_channels_headers() -> None:
    requests: list[bytes] = []
    async with _server(lambda r, w: _answer_success(r, w, requests)) as (base, accepted):
        client = KeepAliveClient(timeout_seconds=5)
        try:
            first = await client.post(base + "/notify/a b?x=1", b"n=1", {"Content-Type": "text/plain"})
            second = await client.post(base + "/notify", b"n=2", {"Content-Type": "text/plain"})
        finally:
            await client.aclose()
    assert (first.status_code, first.content, second.content) == (200, b"success", b"success")
    assert len(accepted) == 1
    head = requests[0].split(b"\r\n")
    assert head[0] == b"POST /notify/a%20b?x=1 HTTP/1.1"
    assert {b"host: " + base.removeprefix("http://").encode(), b"content-type: text/plain", b"content-length: 3"} <= {
        line.lower() for line in head
    }
    assert requests[0].endswith(b"\r\n\r\nn=1") and requests[1].endswith(b"\r\n\r\nn=2")


async def test_a_kept_connection_that_ends_without_an_answer_is_replaced_once() -> None:
    """The server answers the first request of a connection, then closes it on the next without a word (a
    server closing an idle connection as the POST arrives): the POST goes out once more on a new connection."""
    bodies: list[bytes] = []

    async def first_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        assert request is not None
        bodies.append(request[1])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess")
        await writer.drain()
        if (unanswered := await _read_request(reader)) is not None:
            bodies.append(unanswered[1])

    async with _server(first_only) as (base, accepted):
        client = KeepAliveClient(timeout_seconds=5)
        try:
            await client.post(base + "/n", b"first", {})
            second = await client.post(base + "/n", b"second", {})
        finally:
            await client.aclose()
    assert second.content == b"success"
    assert bodies == [b"first", b"second", b"second"] and len(accepted) == 2


async def test_an_answer_too_large_or_too_late_is_a_transport_error() -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000)
        await writer.drain()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await reader.read()  # until the client gives up and closes

    async with _server(huge) as (base, _):
        client = KeepAliveClient(timeout_seconds=5, reply_bytes_max=1000)
        with pytest.raises(TransportError, match="over 1000 bytes"):
            await client.post(base + "/n", b"x", {})
        await client.aclose()
    async with _server(silent) as (base, _):
        client = KeepAliveClient(timeout_seconds=0.2)
        with pytest.raises(ReplyTimeout):
            await client.post(base + "/n", b"x", {})
        await client.aclose()
    with pytest.raises(TransportError, match="not an http"):
        await KeepAliveClient(timeout_seconds=1).post("ftp://127.0.0.1/x", b"", {})


def _answering(*answers: bytes) -> Handler:
    """A server answering each request of a connection with the next of `answers` (the last one then closes)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            if await _read_request(reader) is None:
                return
            writer.write(answer)
            await writer.drain()

    return handler


@pytest.mark.parametrize(
    ("answer", "content"),
    [
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess", b"success"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nsuc\r\n4\r\ncess\r\n0\r\n\r\n", b"success"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
    ids=["interim-answer-skipped", "chunked", "no-content"],
)
async def test_answers_framed_every_way_http_allows_are_read_and_the_connection_kept(
    answer: bytes, content: bytes
) -> None:
    async with _server(_answering(answer, answer)) as (base, accepted):
        client = KeepAliveClient(timeout_seconds=5)
        try:
            replies = [await client.post(base + "/n", b"x", {}) for _ in range(2)]
        finally:
            await client.aclose()
    assert [reply.content for reply in replies] == [content, content]
    assert len(accepted) == 1


@pytest.mark.parametrize(
    ("answer", "answers_per_connection"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 7\r\n\r\nsuccess", 2),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\nsuccess", 2),
        (b"HTTP/1.1 200 OK\r\n\r\nsuccess", 1),  # delimited by the end of the connection
        (b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccessHTTP/1.1 200 OK", 2),  # bytes after the answer
    ],
    ids=["connection-close", "http-1.0", "until-close", "surplus"],
)
async def test_an_answer_that_ends_its_connection_is_read_and_the_connection_not_reused(
    answer: bytes, answers_per_connection: int
) -> None:
    """The server would answer on the same connection again (but for an answer delimited by its end): the client
    opens a new one all the same."""
    async with _server(_answering(*[answer] * answers_per_connection)) as (base, accepted):
        client = KeepAliveClient(timeout_seconds=5)
        try:
            replies = [await client.post(base + "/n", b"x", {}) for _ in range(2)]
        finally:
            await client.aclose()
    assert [(reply.status_code, reply.content) for reply in replies] == [(200, b"success")] * 2
    assert len(accepted) == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsucc",  # cut short
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 7\r\n\r\nsuccess",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 70_000 + b"\r\nContent-Length: 7\r\n\r\nsuccess",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["cut-short", "malformed-header", "upgrade", "head-too-large", "not-http"],
)
async def test_a_malformed_or_incomplete_answer_is_a_transport_error(answer: bytes) -> None:
    async with _server(_answering(answer)) as (base, _):
        client = KeepAliveClient(timeout_seconds=5)
        with pytest.raises(TransportError):
            await client.post(base + "/n", b"x", {})
        await client.aclose()


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("http://127.0.0.1:9/n", {"X-Split": "a\r\nX-Injected: 1"}),
        ("http://127.0.0.1:9/n", {"Bad Name": "x"}),
        ("http://127.0.0.1:9/n", {"X-Latin": "café"}),
        ("http://bad\x00host:9/n", {}),
    ],
    ids=["crlf-in-value", "space-in-name", "non-ascii-value", "control-in-host"],
)
async def test_a_request_that_could_not_be_sent_as_it_is_is_refused_before_connecting(
    url: str, headers: dict[str, str]
) -> None:
    with pytest.raises(TransportError):
        await KeepAliveClient(timeout_seconds=1).post(url, b"x", headers)
