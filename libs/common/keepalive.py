"""HTTP/1.1 keep-alive connections on asyncio streams and httptools: the gateway's proxy pool and an httpx transport.

Why this exists (docs/adr/0003-hand-written-upstream-http-pool.md, docs/performance.md "Sixth pass: transport"):
httpx's own engine — httpcore's pool, h11's pure-Python parser, anyio's streams and cancel scopes — costs 0.5–1.1 ms
of client CPU per request, against ~0.1 ms for a small pool over httptools (llhttp, the C parser uvicorn uses).
A payment makes several such calls, so this module keeps the part of HTTP/1.1 Juhe's calls need and nothing more:

* `KeepAlivePool`: the gateway's pool to one `http://host:port` service, one overall timeout per exchange, replies
  read whole (`UpstreamReply`); `UpstreamConnectError` (no connection could be opened: nothing was sent) is the only
  failure after which a write may be re-sent.
* `KeepAliveTransport`: an `httpx.AsyncBaseTransport` (httpx stays the API every caller uses: client, request and
  response objects, hooks, redirects, streaming) with pools per (scheme, host, port, TLS name), verifying TLS on the
  process's shared context with SNI, httpx's connect/read/write/pool timeouts from the request, httpx's exceptions
  raised where httpcore raises them, a bound on a response's size, keep-alive with idle expiry, and response bodies
  streamed (the webhook delivery and the bill download read theirs chunk by chunk).

Both write the request head themselves and refuse anything that could split or smuggle a request (method and header
names are tokens; the target and header values carry no CR, LF, NUL or other control character) and both refuse to
reuse a connection that delivered bytes it was not asked for (a second response, data while idle) or that the peer
closed. No HTTP/2, no proxies (a client whose settings route it through a proxy keeps httpx's default transport:
`libs.common.http`), no `Expect: 100-continue`, no upgrades.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httptools
import httpx

from libs.common import tracing

READ_CHUNK_BYTES = 65_536
# uvicorn closes idle keep-alive connections after 5 s; dropping ours earlier keeps a request from being
# written onto a connection the service is closing at that very moment.
IDLE_SECONDS_MAX = 2.0
# The transport's default: under the 5 s idle timeout of common servers (uvicorn, Apache), as httpx's own 5 s expiry
# with its socket check was; a pool idle longer than this opens a new connection.
KEEPALIVE_SECONDS = 4.0
RESPONSE_BYTES_MAX = 64 * 1024 * 1024
CONNECTIONS_MAX = 100  # per origin, as httpx's default pool limit
ORIGINS_KEPT_MAX = 64  # origins without a connection in use are forgotten beyond this many

# RFC 9110 tokens (method, header names); a target and header values of visible characters (obs-text allowed, as
# h11 did), values with inner spaces/tabs but none at either end.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")
_FIELD_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\x20\x09\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
BODYLESS_REQUEST_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# What a request target keeps as it is (RFC 3986 path and query characters, and `%` of an escape already made);
# anything else is percent-encoded, as httpx does.
_TARGET_SAFE = "/?@!$&'()*+,;=:%~"


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context (certifi's CA bundle, hostname checks), built once per process: building
    one is ~25 ms of CPU, which every `httpx.AsyncClient()` otherwise pays again (docs/performance.md, "Start-up")."""
    return httpx.create_ssl_context()


# ------------------------------------------------------------------------------------------------ request heads
def request_head(method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The request line and header block, or `httpx.LocalProtocolError` for anything that could split a request."""
    if _TOKEN.fullmatch(method) is None or _TARGET.fullmatch(target) is None:
        raise httpx.LocalProtocolError("refusing to send a malformed request line")
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        if _TOKEN.fullmatch(name) is None or _FIELD_VALUE.fullmatch(value) is None:
            raise httpx.LocalProtocolError(f"refusing to send the malformed header {name!r}")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def proxy_request_head(
    method: str, target: str, authority: str, headers: Iterable[tuple[str, str]], body: bytes
) -> bytes:
    """The gateway's head: `Host` the upstream's authority, `Content-Length` for a body or a method that may carry one,
    every text latin-1 (anything else refused, as h11 did)."""
    try:
        encoded = [(b"Host", authority.encode("latin-1"))]
        encoded += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        if body or method not in BODYLESS_REQUEST_METHODS:
            encoded.append((b"Content-Length", b"%d" % len(body)))
        return request_head(method.encode("latin-1"), target.encode("latin-1"), encoded)
    except UnicodeEncodeError as exc:
        raise httpx.LocalProtocolError("refusing to send a text that is not latin-1") from exc


# ------------------------------------------------------------------------------------------------- connections
class _Reader(asyncio.StreamReader):
    """A stream reader counting the bytes the connection delivered, so that a connection holding any byte its
    responses did not consume (a late answer, a server's 408 before it closes, anything after a response) is never
    reused: the next request would read them as its answer."""

    fed = 0

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]  # asyncio feeds bytes
        self.fed += len(data)
        super().feed_data(data)


@dataclass(slots=True)
class _Connection:
    reader: _Reader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0
    received: int = 0  # bytes read into responses: `reader.fed` beyond it were never asked for

    def reusable(self, now: float, idle_seconds_max: float) -> bool:
        reader = self.reader
        return (
            now - self.idle_since <= idle_seconds_max
            and reader.fed == self.received
            and not reader.at_eof()
            and reader.exception() is None
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()

    async def send(self, data: bytes, within: float | None) -> None:
        """Write `data`; wait for the socket to take it (for at most `within` seconds) only when it did not at once."""
        writer = self.writer
        try:
            writer.write(data)
            if writer.transport.get_write_buffer_size():
                async with asyncio.timeout(within):
                    await writer.drain()
            else:
                await writer.drain()  # raises at once when the connection was lost
        except TimeoutError as exc:
            raise httpx.WriteTimeout("timed out sending the request") from exc
        except (OSError, RuntimeError) as exc:  # RuntimeError: writing to a closed transport
            raise httpx.WriteError(f"sending the request failed: {exc!r}") from exc

    async def receive(self, reply: _Reply, within: float | None) -> bool:
        """Read what has arrived into `reply`; False when the peer closed the connection."""
        try:
            if within is None:
                data = await self.reader.read(READ_CHUNK_BYTES)
            else:
                async with asyncio.timeout(within):
                    data = await self.reader.read(READ_CHUNK_BYTES)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out reading the response") from exc
        except OSError as exc:
            raise httpx.ReadError(f"reading the response failed: {exc!r}") from exc
        if not data:
            return False
        self.received += len(data)
        reply.feed(data)
        return True


async def _connect(
    host: str, port: int, *, tls: ssl.SSLContext | None, server_hostname: str | None, within: float | None
) -> _Connection:
    """A new connection (TLS verified for `server_hostname`, else the host); `httpx.ConnectError` when none could be
    opened (refused, unreachable, unresolvable, TLS refused), `httpx.ConnectTimeout` past `within` seconds."""
    loop = asyncio.get_running_loop()
    reader = _Reader(limit=READ_CHUNK_BYTES, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    try:
        async with asyncio.timeout(within):
            if tls is None:
                transport, _ = await loop.create_connection(lambda: protocol, host, port)
            else:
                transport, _ = await loop.create_connection(
                    lambda: protocol, host, port, ssl=tls, server_hostname=server_hostname or host
                )
    except TimeoutError as exc:
        raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
    except OSError as exc:  # refused, unreachable, DNS, and ssl.SSLError (certificate, handshake)
        raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc!r}") from exc
    return _Connection(reader, asyncio.StreamWriter(transport, protocol, reader, loop))


class ResponseTooLarge(httpx.RemoteProtocolError):
    """The peer's response passed the client's bound on a response's size (the connection is closed)."""


class _Reply:
    """httptools callbacks collecting one response (1xx responses skipped; HEAD ends at its headers)."""

    __slots__ = (
        "bytes_max",
        "chunks",
        "complete",
        "desync",
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
        self.parser = httptools.HttpResponseParser(self)
        self.head_request = head_request
        self.bytes_max = bytes_max
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.complete = False
        self.too_large = False
        self.keep_alive = False
        self.desync = False  # bytes after the response: the connection is not reused
        self.sized = False  # Content-Length or chunked: the end of the body is known without the connection's

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            raise httpx.RemoteProtocolError("the server asked for a protocol upgrade") from exc
        except httptools.HttpParserError as exc:
            if self.complete:  # garbage after a whole response: the response stands, the connection goes
                self.desync = True
                return
            raise httpx.RemoteProtocolError(f"malformed HTTP response: {exc}") from exc
        if self.too_large:
            raise ResponseTooLarge(f"response over {self.bytes_max} bytes")

    def on_message_begin(self) -> None:
        if self.complete:
            self.desync = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        lowered = name.lower()
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            self.sized = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if status < 200:
            return
        self.status = status
        self.headers_done = True
        if self.head_request:
            self.keep_alive = self.parser.should_keep_alive()
            self.complete = True  # no body follows a HEAD answer, whatever Content-Length says

    def on_body(self, body: bytes) -> None:
        if self.complete:
            self.desync = True
            return
        self.size += len(body)
        if self.size > self.bytes_max:
            self.too_large = True
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if not self.headers_done:  # an informational answer: start over for the final one
            self.headers, self.chunks, self.size, self.sized = [], [], 0, False
            return
        self.keep_alive = self.parser.should_keep_alive()  # read now: llhttp resets it for the next message
        self.complete = True

    def delimited_by_close(self) -> bool:
        return self.headers_done and not self.sized and not self.too_large


async def _send_chunked(
    connection: _Connection, stream: httpx.SyncByteStream | httpx.AsyncByteStream, within: float | None
) -> None:
    """A streamed request body, after its head, as HTTP/1.1 chunks."""
    if not isinstance(stream, httpx.AsyncByteStream):
        raise httpx.LocalProtocolError("a synchronous request body on an asynchronous transport")
    async for chunk in stream:
        if chunk:
            await connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk), within)
    await connection.send(b"0\r\n\r\n", within)


class _Origin:
    """The connections to one origin: at most `connections_max` in use, the idle ones kept for reuse."""

    __slots__ = ("closed", "host", "idle", "in_use", "port", "server_hostname", "slots", "tls")

    def __init__(
        self, host: str, port: int, *, tls: ssl.SSLContext | None, server_hostname: str | None, connections_max: int
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.server_hostname = server_hostname
        self.slots = asyncio.Semaphore(connections_max)
        self.idle: list[_Connection] = []
        self.in_use = 0
        self.closed = False

    async def acquire(self, within: float | None) -> None:
        """A slot for one exchange (`in_use` counts the waiting ones too: an origin someone waits for is kept)."""
        self.in_use += 1
        try:
            if self.slots.locked():
                async with asyncio.timeout(within):
                    await self.slots.acquire()
            else:
                await self.slots.acquire()
        except BaseException as exc:
            self.in_use -= 1
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout(f"no free connection to {self.host}:{self.port} in time") from exc
            raise

    def release(self) -> None:
        self.in_use -= 1
        self.slots.release()

    def take_idle(self, idle_seconds_max: float) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            connection = self.idle.pop()
            if connection.reusable(now, idle_seconds_max):
                return connection
            connection.close()
        return None

    def park(self, connection: _Connection, reply: _Reply, idle_max: int) -> None:
        """Keep the connection for the next request if its response was whole and it may be reused, else close it."""
        if (
            not self.closed
            and reply.complete
            and reply.keep_alive
            and not reply.desync
            and len(self.idle) < idle_max
            and not connection.reader.at_eof()
        ):
            connection.idle_since = time.monotonic()
            self.idle.append(connection)
        else:
            connection.close()

    async def connect(self, within: float | None) -> _Connection:
        return await _connect(self.host, self.port, tls=self.tls, server_hostname=self.server_hostname, within=within)

    async def open(
        self,
        data: bytes,
        chunks: httpx.SyncByteStream | httpx.AsyncByteStream | None,
        reply: _Reply,
        phase_seconds: Mapping[str, float | None],
        idle_seconds_max: float,
    ) -> _Connection:
        """One exchange up to the response's head, with httpx's per-phase timeouts (`pool`, `connect`, `write`, each
        `read`): a slot, an idle connection (or a new one), `data` written (then `chunks` sent chunked, when given),
        the answer read into `reply` until its head is whole. The caller reads the body (`_Body`), which gives the
        connection and the slot back; on any failure here the connection is closed and the slot freed."""
        await self.acquire(phase_seconds.get("pool"))
        try:
            connection = self.take_idle(idle_seconds_max) or await self.connect(phase_seconds.get("connect"))
            try:
                write_timeout = phase_seconds.get("write")
                await connection.send(data, write_timeout)
                if chunks is not None:
                    await _send_chunked(connection, chunks, write_timeout)
                read_timeout = phase_seconds.get("read")
                while not reply.headers_done:
                    if not await connection.receive(reply, read_timeout):
                        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            except BaseException:
                connection.close()
                raise
        except BaseException:
            self.release()
            raise
        return connection

    def close(self) -> None:
        self.closed = True
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.close()


# ----------------------------------------------------------------------------------- the gateway's proxy pool
class UpstreamTransportError(Exception):
    """The exchange failed after a connection was open: the service may or may not have seen the request."""


class UpstreamConnectError(UpstreamTransportError):
    """No connection could be opened: the request never left the gateway."""


class UpstreamTimeoutError(UpstreamTransportError):
    pass


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class KeepAlivePool:
    """Connections to one `http://host:port` service, at most `connections_max` at a time, one overall timeout per
    exchange (connect, send, the whole reply), replies read whole and bounded."""

    def __init__(self, base_url: str, *, connections_max: int, timeout_seconds: float, response_bytes_max: int):
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"only plain http://host:port upstreams are supported, not {base_url!r}")
        self.authority = url.netloc
        self.timeout_seconds = timeout_seconds
        self.response_bytes_max = response_bytes_max
        self._idle_max = connections_max
        self._origin = _Origin(
            url.hostname, url.port or 80, tls=None, server_hostname=None, connections_max=connections_max
        )

    async def request(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes) -> UpstreamReply:
        origin = self._origin
        try:
            head = proxy_request_head(method, target, self.authority, headers, body)
            await origin.acquire(None)
        except httpx.LocalProtocolError as exc:
            raise UpstreamTransportError(str(exc)) from exc
        try:
            async with asyncio.timeout(self.timeout_seconds):
                connection = origin.take_idle(IDLE_SECONDS_MAX) or await origin.connect(None)
                try:
                    return await self._exchange(connection, head + body if body else head, method == "HEAD")
                except BaseException:
                    connection.close()
                    raise
        except TimeoutError as exc:
            raise UpstreamTimeoutError(f"no answer within {self.timeout_seconds} s") from exc
        except httpx.ConnectError as exc:
            raise UpstreamConnectError(f"cannot connect to {self.authority}: {exc}") from exc
        except httpx.TransportError as exc:
            raise UpstreamTransportError(f"{self.authority}: {exc}") from exc
        finally:
            origin.release()

    async def _exchange(self, connection: _Connection, data: bytes, head_request: bool) -> UpstreamReply:
        await connection.send(data, None)
        reply = _Reply(self.response_bytes_max, head_request=head_request)
        while not reply.complete:
            if not await connection.receive(reply, None):
                if reply.delimited_by_close():
                    break  # HTTP/1.1 without Content-Length or chunking: the body ends with the connection
                raise httpx.RemoteProtocolError("the service closed the connection before answering")
        self._origin.park(connection, reply, self._idle_max)
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in reply.headers]
        return UpstreamReply(reply.status, headers, b"".join(reply.chunks))

    async def close(self) -> None:
        self._origin.close()


# ------------------------------------------------------------------------------------------- the httpx transport
_Key = tuple[str, str, int, str | None]  # scheme, host, port, TLS server name when it is not the host


class _Body(httpx.AsyncByteStream):
    """A response's body, read from its connection as the caller iterates; closing it gives the connection back to
    its pool when the response was read whole, else closes it, and frees the pool slot either way."""

    __slots__ = ("_connection", "_idle_max", "_origin", "_read_timeout", "_reply")

    def __init__(
        self, origin: _Origin, connection: _Connection, reply: _Reply, read_within: float | None, idle_max: int
    ) -> None:
        self._origin: _Origin | None = origin
        self._connection = connection
        self._reply = reply
        self._read_timeout = read_within
        self._idle_max = idle_max

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reply = self._reply
        while True:
            if reply.chunks:
                chunks, reply.chunks = reply.chunks, []
                for chunk in chunks:
                    yield chunk
            if not await self._receive():
                return

    async def read(self, bytes_max: int | None) -> bytes:
        """The whole body, or once `bytes_max` bytes of it have arrived what has (the connection is then not reused:
        the rest was not read)."""
        reply = self._reply
        while (bytes_max is None or reply.size < bytes_max) and await self._receive():
            pass
        chunks, reply.chunks = reply.chunks, []
        return b"".join(chunks)

    async def _receive(self) -> bool:
        """Read more of the body into the reply; False once it has ended."""
        reply = self._reply
        if reply.complete:
            return False
        if not await self._connection.receive(reply, self._read_timeout):
            if reply.delimited_by_close():
                return False  # the body ended with the connection, which is not reused (not `complete`)
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
        return True

    async def aclose(self) -> None:
        origin, self._origin = self._origin, None
        if origin is not None:
            origin.park(self._connection, self._reply, self._idle_max)
            origin.release()


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """httpx's transport for Juhe's calls (module docstring): HTTP/1.1 over asyncio streams and httptools.

    `connections_max` bounds the connections in use per origin (a request past it waits up to httpx's pool
    timeout: `httpx.PoolTimeout`); `keepalive_max` how many idle ones an origin keeps (default: all);
    `keepalive_seconds` how long an idle one may be reused (0: a connection per request). A request's
    `sni_hostname` extension (as httpcore reads it) connects to the URL's host — an address — while TLS's SNI and
    certificate check use that name: the webhook client's pinned, checked address (cashier flows/webhook_targets.py).
    """

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        connections_max: int = CONNECTIONS_MAX,
        keepalive_max: int | None = None,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        response_bytes_max: int = RESPONSE_BYTES_MAX,
    ) -> None:
        self._tls = tls
        self._connections_max = connections_max
        self._idle_max = connections_max if keepalive_max is None else keepalive_max
        if keepalive_seconds <= 0:
            self._idle_max = 0
        self._keepalive_seconds = keepalive_seconds
        self._response_bytes_max = response_bytes_max
        self._origins: dict[_Key, _Origin] = {}

    def _origin(self, url: httpx.URL, server_hostname: str | None) -> _Origin:
        scheme = url.scheme
        if scheme == "http":
            port, tls = url.port or 80, None
        elif scheme == "https":
            port, tls = url.port or 443, self._tls or shared_tls_context()
        else:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        host = url.host
        if not host:
            raise httpx.UnsupportedProtocol("a URL without a host")
        key = (scheme, host, port, server_hostname if tls is not None else None)
        origin = self._origins.get(key)
        if origin is None:
            if len(self._origins) >= ORIGINS_KEPT_MAX:
                self._forget_unused()
            origin = self._origins[key] = _Origin(
                host, port, tls=tls, server_hostname=key[3], connections_max=self._connections_max
            )
        return origin

    def _forget_unused(self) -> None:
        for key, origin in list(self._origins.items()):
            if origin.in_use == 0:
                origin.close()
                del self._origins[key]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        extensions = request.extensions
        timeout = extensions.get("timeout") or {}
        try:
            body: bytes | None = request.content
        except httpx.RequestNotRead:  # a body given as a stream
            if b"chunked" in request.headers.get("transfer-encoding", "").encode("latin-1").lower():
                body = None  # sent chunked as it comes, as httpx announced it
            else:
                body = await request.aread()  # its length announced (a copied request's `stream=`)
        method = request.method
        head = request_head(method.encode("latin-1", "replace"), request.url.raw_path, request.headers.raw)
        origin = self._origin(request.url, extensions.get("sni_hostname"))
        reply = _Reply(self._response_bytes_max, head_request=method == "HEAD")
        connection = await origin.open(
            head if not body else head + body,
            request.stream if body is None else None,
            reply,
            timeout,
            self._keepalive_seconds,
        )
        return httpx.Response(
            reply.status,
            headers=reply.headers,
            stream=_Body(origin, connection, reply, timeout.get("read"), self._idle_max),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        origins = list(self._origins.values())
        self._origins.clear()
        for origin in origins:
            origin.close()


# ------------------------------------------------------------------------------- the lean call, without httpx
@dataclass(frozen=True, slots=True)
class LeanResponse:
    """A whole response of a `KeepAliveClient` call: what a service-to-service JSON call reads (its status and body;
    the names httpx's `Response` gives them, so `libs.common.http.json_object` reads both)."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class KeepAliveClient:
    """Calls to one origin (`base_url`: scheme, host, port and an optional path prefix) on the transport's connections
    and parser, without httpx's client layer: no URL objects, header models, cookies, hooks or redirects, the
    response read whole into a `LeanResponse` (ADR 0003, "When to use which"; ~0.05 ms of client CPU per call where
    httpx on `KeepAliveTransport` takes ~0.3 ms).

    Everything else as `KeepAliveTransport` under httpx: httpx's exceptions raised where httpcore raises them, a
    timeout of `timeout_seconds` for each of pool, connect, write and every read; verifying TLS (the process's
    shared context unless `tls` is given) for `server_hostname` when given, else the URL's host; connections kept
    alive `keepalive_seconds` (at most `keepalive_max` idle); a bound on a response's size (`ResponseTooLarge`).
    `Host` is `host_header` when given (the name, when `base_url` names the address it was resolved to), else the
    URL's authority. While tracing is on, each call is a CLIENT span whose `traceparent` the callee continues.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        host_header: str | None = None,
        connections_max: int = CONNECTIONS_MAX,
        keepalive_max: int | None = None,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        response_bytes_max: int = RESPONSE_BYTES_MAX,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"only http:// and https:// URLs with a host are supported, not {base_url!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        if url.scheme == "https":
            tls = tls or shared_tls_context()
        else:
            tls, server_hostname = None, None
        self._origin = _Origin(
            url.hostname, port, tls=tls, server_hostname=server_hostname, connections_max=connections_max
        )
        self._prefix = url.path.rstrip("/")
        self._authority = host_header or url.netloc
        self._span_url = f"{url.scheme}://{url.netloc}{self._prefix}"
        self._timeout = dict.fromkeys(("pool", "connect", "write", "read"), timeout_seconds)
        self._idle_max = connections_max if keepalive_max is None else keepalive_max
        if keepalive_seconds <= 0:
            self._idle_max = 0
        self._keepalive_seconds = keepalive_seconds
        self._response_bytes_max = response_bytes_max

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
        read_bytes_max: int | None = None,
    ) -> LeanResponse:
        """`method` on the base URL's path + `path` (percent-encoded where it needs to be, as httpx would), with
        `Host`, `Content-Length` (for a body or a method that may carry one) and `headers`. `read_bytes_max` stops
        reading the body at that many bytes (the connection is then closed, not reused): for a caller that needs
        only the status of an answer it does not trust."""
        target = quote(self._prefix + path, safe=_TARGET_SAFE)
        if not tracing.enabled():
            return await self._exchange(method, target, headers or {}, content, read_bytes_max)
        fields = dict(headers or {})
        attributes = {
            "http.request.method": method,
            "url.full": self._span_url + target,
            "server.address": self._origin.host,
            "server.port": self._origin.port,
        }
        with tracing.client_span(method, fields, **attributes) as span:
            response = await self._exchange(method, target, fields, content, read_bytes_max)
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    async def _exchange(
        self, method: str, target: str, headers: Mapping[str, str], content: bytes, read_bytes_max: int | None
    ) -> LeanResponse:
        head = proxy_request_head(method, target, self._authority, headers.items(), content)
        reply = _Reply(self._response_bytes_max, head_request=method == "HEAD")
        origin = self._origin
        connection = await origin.open(head + content, None, reply, self._timeout, self._keepalive_seconds)
        body = _Body(origin, connection, reply, self._timeout["read"], self._idle_max)
        try:
            content = await body.read(read_bytes_max)
        finally:
            await body.aclose()
        return LeanResponse(reply.status, reply.headers, content)

    async def aclose(self) -> None:
        self._origin.close()
