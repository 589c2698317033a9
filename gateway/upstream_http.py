"""A small HTTP/1.1 keep-alive client for the gateway's hot path to the services.

Why not httpx here: the profile of the gateway under load showed httpx/httpcore/anyio layers (request
building, URL merging, cookie handling, cancellation shields, a pool lock per request) as about half of
the gateway's own CPU per proxied call, more than the guard statement and the signature check together.
This client keeps only what a reverse proxy needs: a bounded pool of keep-alive connections to one
service, h11 (the HTTP/1.1 state machine httpcore itself uses, a dependency of uvicorn) to write the
request and parse the response correctly (chunked or sized bodies, HEAD, keep-alive rules, header
validation), one overall timeout per exchange, and a bound on the response size. httpx stays for
everything else (OpenAPI fetches, read retries with backoff).

Errors: `UpstreamConnectError` means no connection could be opened, so nothing reached the service (the
only case in which a write may be sent again); every other failure is an `UpstreamTransportError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

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


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
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
        protocol = connection.protocol
        wire_headers = [("Host", self.authority), *headers]
        if body or method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            wire_headers.append(("Content-Length", str(len(body))))
        try:
            out = protocol.send(h11.Request(method=method, target=target, headers=wire_headers))
            if body:
                out += protocol.send(h11.Data(data=body))
            out += protocol.send(h11.EndOfMessage())
            connection.writer.write(out)
            await connection.writer.drain()
            return await self._read_reply(connection)
        except h11.ProtocolError as exc:
            raise UpstreamTransportError(f"HTTP protocol error with {self.authority}: {exc}") from exc
        except OSError as exc:
            raise UpstreamTransportError(f"connection to {self.authority} failed: {exc!r}") from exc

    async def _read_reply(self, connection: _Connection) -> UpstreamReply:
        protocol = connection.protocol
        status = 0
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                protocol.receive_data(await connection.reader.read(READ_CHUNK_BYTES))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers]
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.response_bytes_max:
                    raise UpstreamTransportError(f"response from {self.authority} over {self.response_bytes_max} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise UpstreamTransportError(f"{self.authority} closed the connection before answering")
            # InformationalResponse (1xx) and anything else: keep reading
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            protocol.start_next_cycle()
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return UpstreamReply(status, headers, b"".join(chunks))
