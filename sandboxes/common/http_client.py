"""The notifications' HTTP client: POSTs over kept-alive HTTP/1.1 connections, on asyncio streams framed by h11.

Why not httpx here: a channel sandbox sends one notification per payment, and under the end-to-end bench the
httpx `AsyncClient.post` behind it (request building, URL merging, cookie extraction, auth and redirect
handling, httpcore's pool with its locks and cancellation shields, anyio) was ~30 % of the sandboxes' process
samples, more than the channel's own RSA signing (docs/performance.md, "Sixth pass: the sandboxes and the
garbage collector"). A notification needs far less: POST a body with the channel's headers to the merchant's
URL, read the status and the (tiny) answer, keep the connection for the next one. h11 keeps the wire format
strict (it refuses a malformed request or answer, and says when a connection may be reused); this module only
pools connections and bounds each exchange in time and size.

Sandboxes share no code with Juhe (docs/adr/0011-sandboxes-share-no-code-with-juhe.md), so this is the sandboxes'
own client, not the gateway's or the services' keep-alive pools; it plays the channel's side of the wire.
What it does not do, unlike httpx: follow redirects (httpx did not either, by default), read proxy variables from
the environment, or ask for compressed answers (no `Accept-Encoding`: a merchant's acknowledgement is a few bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import h11

READ_CHUNK_BYTES = 65_536
REPLY_BYTES_MAX = 1 << 20  # an acknowledgement is `success` or an empty 200/204; anything this large is refused
# Servers close idle keep-alive connections after a few seconds (uvicorn: 5 s); a connection idle longer than
# this is closed rather than reused, so a POST is not written onto one the server is closing at that moment.
IDLE_SECONDS_MAX = 2.0
IDLE_PER_ORIGIN_MAX = 32
USER_AGENT = "juhe-sandbox-notify/1"
# RFC 3986's reserved and unreserved characters and `%` (escapes kept): anything else in a URL's path or query
# (a space, a non-ASCII character) is percent-encoded, as httpx does, so a URL can never split the request line.
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:-._~%"

Origin = tuple[str, str, int]  # scheme, host, port


class TransportError(Exception):
    """The POST failed: no complete answer came back (the dispatcher records the attempt and retries later)."""


class ConnectError(TransportError):
    """No connection could be opened (or the URL names none): the request never left."""


class ReplyTimeout(TransportError):
    """No complete answer within the timeout."""


class _NoAnswer(TransportError):
    """The connection ended before a single byte of an answer: on a reused connection, the server closed it idle."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What a merchant's endpoint answered: what the channels' acknowledgement rules look at."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    idle_since: float = 0.0

    def reusable(self, now: float) -> bool:
        return (
            now - self.idle_since <= IDLE_SECONDS_MAX
            and not self.reader.at_eof()
            and not self.writer.is_closing()
            and self.protocol.our_state is h11.IDLE
        )

    def close(self) -> None:
        self.writer.close()


class KeepAliveClient:
    """POSTs to any URL, keeping up to `IDLE_PER_ORIGIN_MAX` idle connections per origin for reuse.

    Each `post` is bounded by `timeout_seconds` as a whole (connect, write, answer). A connection is reused
    only after a complete exchange that both sides keep alive; one that failed in any way is closed."""

    def __init__(self, *, timeout_seconds: float, reply_bytes_max: int = REPLY_BYTES_MAX) -> None:
        self.timeout_seconds = timeout_seconds
        self.reply_bytes_max = reply_bytes_max
        self._idle: dict[Origin, list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """POST `body` with `headers` to `url`; the answer, whatever its status. Raises `TransportError`.

        A reused connection that the server had closed while it sat idle (it ends before any answer) is
        replaced by a new one and the POST sent once more: a notification may arrive twice in any case (the
        channels retry until acknowledged; merchants deduplicate by its id), and the server had not read it."""
        origin, authority, target = _split(url)
        try:
            async with asyncio.timeout(self.timeout_seconds):
                connection, reply = await self._send(origin, authority, target, body, headers)
        except TimeoutError as exc:
            raise ReplyTimeout(f"no answer from {authority} within {self.timeout_seconds} s") from exc
        self._keep_or_close(origin, connection)
        return reply

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _take_idle(self, origin: Origin) -> _Connection | None:
        connections = self._idle.get(origin)
        now = time.monotonic()
        while connections:
            connection = connections.pop()
            if connection.reusable(now):
                return connection
            connection.close()
        return None

    def _keep_or_close(self, origin: Origin, connection: _Connection) -> None:
        protocol = connection.protocol
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            protocol.start_next_cycle()
            connections = self._idle.setdefault(origin, [])
            if len(connections) < IDLE_PER_ORIGIN_MAX:
                connection.idle_since = time.monotonic()
                connections.append(connection)
                return
        connection.close()

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        tls = self._tls_context() if scheme == "https" else None
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {host}:{port}: {exc!r}") from exc
        return _Connection(reader, writer)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            import certifi  # the same trust store httpx used

            self._tls = ssl.create_default_context(cafile=certifi.where())
        return self._tls

    async def _send(
        self, origin: Origin, authority: str, target: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[_Connection, Reply]:
        reused = self._take_idle(origin)
        if reused is not None:
            with contextlib.suppress(_NoAnswer):
                return reused, await self._exchange_on(reused, authority, target, body, headers)
        fresh = await self._connect(origin)
        return fresh, await self._exchange_on(fresh, authority, target, body, headers)

    async def _exchange_on(
        self, connection: _Connection, authority: str, target: str, body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        """One exchange on `connection`, which is closed if it fails in any way (or is cancelled)."""
        try:
            return await self._exchange(connection, authority, target, body, headers)
        except BaseException:
            connection.close()
            raise

    async def _exchange(
        self, connection: _Connection, authority: str, target: str, body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        protocol = connection.protocol
        fields = [("Host", authority), ("User-Agent", USER_AGENT), *headers.items(), ("Content-Length", str(len(body)))]
        try:
            data = protocol.send(h11.Request(method="POST", target=target, headers=fields))
            data += protocol.send(h11.Data(data=body)) + protocol.send(h11.EndOfMessage())
        except h11.ProtocolError as exc:
            raise TransportError(f"refusing to send a malformed request to {authority}: {exc}") from exc
        try:
            connection.writer.write(data)
            await connection.writer.drain()
        except OSError as exc:
            raise _NoAnswer(f"connection to {authority} failed before an answer: {exc!r}") from exc
        try:
            return await self._read_reply(connection, authority)
        except h11.ProtocolError as exc:
            raise TransportError(f"HTTP protocol error with {authority}: {exc}") from exc
        except OSError as exc:
            raise TransportError(f"connection to {authority} failed: {exc!r}") from exc

    async def _read_reply(self, connection: _Connection, authority: str) -> Reply:
        protocol = connection.protocol
        status = 0
        reply_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0
        answered = False  # any byte of an answer received
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await connection.reader.read(READ_CHUNK_BYTES)
                except OSError as exc:
                    if not answered:
                        raise _NoAnswer(f"connection to {authority} failed before an answer: {exc!r}") from exc
                    raise
                if not data and not answered:
                    raise _NoAnswer(f"{authority} closed the connection before answering")
                answered = True
                protocol.receive_data(data)
            elif isinstance(event, h11.Response):  # the final answer (h11 hands 1xx as InformationalResponse)
                status, reply_headers = event.status_code, list(event.headers)
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.reply_bytes_max:
                    raise TransportError(f"answer from {authority} over {self.reply_bytes_max} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return Reply(status, reply_headers, b"".join(chunks))
            elif isinstance(event, h11.ConnectionClosed):
                raise TransportError(f"{authority} closed the connection before answering")


def _split(url: str) -> tuple[Origin, str, str]:
    """(origin, the Host header's value, the request target) of an http(s) URL; `ConnectError` for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a port out of range or not a number
        raise ConnectError(f"not a usable URL: {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"not an http(s) URL: {url!r}")
    authority = parts.netloc.rpartition("@")[2]
    target = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_TARGET_SAFE)
    return (parts.scheme, parts.hostname, port), authority, target
