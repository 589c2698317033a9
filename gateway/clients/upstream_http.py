"""A small HTTP/1.1 keep-alive client for the gateway's hot path to the services.

Why not httpx here: the profile of the gateway under load showed httpx/httpcore/anyio layers (request
building, URL merging, cookie handling, cancellation shields, a pool lock per request) as about half of
the gateway's own CPU per proxied call, more than the guard statement and the signature check together.
This client keeps only what a reverse proxy needs: a bounded pool of keep-alive connections to one
service, one overall timeout per exchange, and a bound on the response size.

Responses are parsed by httptools (llhttp, the C parser uvicorn already uses for requests): sized,
chunked and read-until-close bodies, keep-alive rules, 1xx skipped, HEAD without a body. It replaced h11,
whose pure-Python state machine and header validation were about a seventh of the gateway's CPU. The
request is written here, and validated as strictly as h11 did: method and header names are tokens, the
target and header values carry no CR, LF, NUL or other control character, so nothing a client sent can
split the request. httpx stays for everything else (OpenAPI fetches, read retries with backoff).

Errors: `UpstreamConnectError` means no connection could be opened, so nothing reached the service (the
only case in which a write may be sent again); every other failure is an `UpstreamTransportError`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

READ_CHUNK_BYTES = 65_536
# uvicorn closes idle keep-alive connections after 5 s; dropping ours earlier keeps a request from being
# written onto a connection the service is closing at that very moment.
IDLE_SECONDS_MAX = 2.0


class UpstreamTransportError(Exception):
    """The exchange failed after a connection was open: the service may or may not have seen the request."""


class UpstreamConnectError(UpstreamTransportError):
    """No connection could be opened: the request never left the gateway."""


class UpstreamTimeoutError(UpstreamTransportError):
    pass


# RFC 9110 tokens (method, header names); a target and header values of visible characters (obs-text
# allowed, as h11 did), values with inner spaces/tabs but none at either end.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"[\x21-\x7e\x80-\xff]+")
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff](?:[\x20\x09\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
BODYLESS_REQUEST_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float) -> bool:
        return now - self.idle_since <= IDLE_SECONDS_MAX and not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class KeepAlivePool:
    """Connections to one `http://host:port` service, at most `connections_max` at a time."""

    def __init__(self, base_url: str, *, connections_max: int, timeout_seconds: float, response_bytes_max: int):
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"only plain http://host:port upstreams are supported, not {base_url!r}")
        self.host = url.hostname
        self.port = url.port or 80
        self.authority = url.netloc
        self.timeout_seconds = timeout_seconds
        self.response_bytes_max = response_bytes_max
        self._slots = asyncio.Semaphore(connections_max)
        self._idle: list[_Connection] = []

    async def request(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes) -> UpstreamReply:
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    connection = self._take_idle() or await self._connect()
                    try:
                        reply = await self._exchange(connection, method, target, headers, body)
                    except BaseException:
                        connection.close()
                        raise
            except TimeoutError as exc:
                raise UpstreamTimeoutError(f"no answer within {self.timeout_seconds} s") from exc
            return reply

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.usable(now):
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise UpstreamConnectError(f"cannot connect to {self.authority}: {exc!r}") from exc
        return _Connection(reader, writer)

    async def _exchange(
        self, connection: _Connection, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> UpstreamReply:
        head = _request_head(method, target, self.authority, headers, body)
        try:
            connection.writer.write(head + body if body else head)
            await connection.writer.drain()
            return await self._read_reply(connection, head_request=method == "HEAD")
        except OSError as exc:
            raise UpstreamTransportError(f"connection to {self.authority} failed: {exc!r}") from exc

    async def _read_reply(self, connection: _Connection, *, head_request: bool) -> UpstreamReply:
        reply = _ReplyReader(self.response_bytes_max, head_request=head_request)
        parser = httptools.HttpResponseParser(reply)
        reply.parser = parser
        while not reply.complete:
            data = await connection.reader.read(READ_CHUNK_BYTES)
            if not data:
                if reply.delimited_by_close():
                    break  # HTTP/1.1 without Content-Length or chunking: the body ends with the connection
                raise UpstreamTransportError(f"{self.authority} closed the connection before answering")
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                raise UpstreamTransportError(f"{self.authority} asked for a protocol upgrade") from exc
            except httptools.HttpParserError as exc:
                raise UpstreamTransportError(f"HTTP protocol error with {self.authority}: {exc}") from exc
            if reply.too_large:
                raise UpstreamTransportError(f"response from {self.authority} over {self.response_bytes_max} bytes")
        if reply.complete and reply.keep_alive and not connection.reader.at_eof():
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return UpstreamReply(reply.status, reply.headers, b"".join(reply.chunks))


class _ReplyReader:
    """httptools callbacks collecting one response (1xx responses skipped; HEAD ends at its headers)."""

    __slots__ = (
        "bytes_max",
        "chunks",
        "complete",
        "head_request",
        "headers",
        "headers_done",
        "keep_alive",
        "parser",
        "size",
        "sized",
        "status",
        "too_large",
    )

    def __init__(self, bytes_max: int, *, head_request: bool) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.head_request = head_request
        self.bytes_max = bytes_max
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.complete = False
        self.too_large = False
        self.keep_alive = False
        self.sized = False  # Content-Length or chunked: the end of the body is known without the connection's

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            self.sized = True
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        self.headers_done = True
        if self.head_request and self.status >= 200:
            self.keep_alive = self.parser.should_keep_alive()
            self.complete = True  # no body follows a HEAD answer, whatever Content-Length says

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.bytes_max:
            self.too_large = True
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.status < 200:  # an informational answer: start over for the final one
            self.headers, self.chunks, self.size, self.headers_done, self.sized = [], [], 0, False, False
            return
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()  # read now: llhttp resets it for the next message
        self.complete = True

    def delimited_by_close(self) -> bool:
        return self.headers_done and self.status >= 200 and not self.sized and not self.too_large


def _request_head(method: str, target: str, authority: str, headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    """The request line and headers, refusing anything that could split or smuggle a request."""
    if _TOKEN.fullmatch(method) is None or _TARGET.fullmatch(target) is None:
        raise UpstreamTransportError("refusing to send a malformed request line")
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n"]
    for name, value in headers:
        if _TOKEN.fullmatch(name) is None or _FIELD_VALUE.fullmatch(value) is None:
            raise UpstreamTransportError(f"refusing to send the malformed header {name!r}")
        lines.append(f"{name}: {value}\r\n")
    if body or method not in BODYLESS_REQUEST_METHODS:
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise UpstreamTransportError("refusing to send a header that is not latin-1") from exc
