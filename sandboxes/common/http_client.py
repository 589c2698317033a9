"""The notifications' HTTP client: POSTs over kept-alive HTTP/1.1 connections on asyncio streams, answers read by
httptools.

Why not httpx here: a channel sandbox sends one notification per payment, and under the end-to-end bench the
httpx `AsyncClient.post` behind it (request building, URL merging, cookie extraction, auth and redirect
handling, httpcore's pool with its locks and cancellation shields, anyio) was ~30 % of the sandboxes' process
samples, more than the channel's own RSA signing (docs/performance.md, "Sixth pass: the sandboxes and the
garbage collector"). A notification needs far less: POST a body with the channel's headers to the merchant's
URL, read the status and the (tiny) answer, keep the connection for the next one. The answer is parsed by httptools
(llhttp, the C parser uvicorn uses), which refuses a malformed answer and says whether the connection may be kept;
the request is written here, from a target that is percent-encoded and header fields checked before they are sent, so
a URL or a header can never split the request. h11 did both in pure Python: a POST cost ~105 us of the client's CPU
on h11 and costs ~30 us now (docs/performance.md, "Seventh pass: the sandboxes"). This module only pools connections
and bounds each exchange in time and size.

Sandboxes share no code with Juhe (docs/adr/0011-sandboxes-share-no-code-with-juhe.md), so this is the sandboxes'
own client, not the gateway's or the services' keep-alive pools; it plays the channel's side of the wire.
What it does not do, unlike httpx: follow redirects (httpx did not either, by default), read proxy variables from
the environment, or ask for compressed answers (no `Accept-Encoding`: a merchant's acknowledgement is a few bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httptools

READ_CHUNK_BYTES = 65_536
REPLY_BYTES_MAX = 1 << 20  # an acknowledgement is `success` or an empty 200/204; anything this large is refused
HEAD_BYTES_MAX = 65_536  # an answer's status line and header fields
# Servers close idle keep-alive connections after a few seconds (uvicorn: 5 s); a connection idle longer than
# this is closed rather than reused, so a POST is not written onto one the server is closing at that moment.
IDLE_SECONDS_MAX = 2.0
IDLE_PER_ORIGIN_MAX = 32
USER_AGENT = "juhe-sandbox-notify/1"
# RFC 3986's reserved and unreserved characters and `%` (escapes kept): anything else in a URL's path or query
# (a space, a non-ASCII character) is percent-encoded, as httpx does, so a URL can never split the request line.
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:-._~%"
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_FIELD_VALUE = re.compile(r"([\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?)?")  # visible ASCII, spaces only inside
_AUTHORITY = re.compile(r"[\x21-\x7e]+")  # host[:port], as the Host field carries it

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
    headers: list[tuple[bytes, bytes]]  # names in lower case
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _Answer:
    """httptools' callbacks, collecting the answer to one POST: interim (1xx) answers are skipped, the body is bounded,
    and whether the connection may carry the next POST is the parser's word (HTTP/1.0, `Connection: close`)."""

    def __init__(self, authority: str, body_bytes_max: int) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.authority = authority
        self.body_bytes_max = body_bytes_max
        self.received = False  # any byte of an answer
        self.head_bytes = 0
        self.status_code = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.body_bytes = 0
        self.length_known = False  # Content-Length or chunked: else the body ends with the connection
        self.complete = False
        self.keep_alive = False
        self.surplus = False  # bytes after the answer: the connection is not reused

    def feed(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            raise TransportError(f"{self.authority} switched protocols instead of answering") from exc
        except httptools.HttpParserError as exc:
            if not self.complete:
                raise TransportError(f"HTTP protocol error with {self.authority}: {exc}") from exc
            self.surplus = True  # a complete answer followed by garbage: the answer stands, the connection goes
        if self.head_bytes > HEAD_BYTES_MAX:
            raise TransportError(f"answer from {self.authority} with a head over {HEAD_BYTES_MAX} bytes")
        if self.body_bytes > self.body_bytes_max:
            raise TransportError(f"answer from {self.authority} over {self.body_bytes_max} bytes")

    def end_of_connection(self) -> None:
        """The server closed the connection: the end of an answer whose body runs until then, else an error."""
        if self.status_code and not self.length_known:
            self.complete, self.keep_alive = True, False
            return
        raise TransportError(f"{self.authority} closed the connection before answering completely")

    def reply(self) -> Reply:
        return Reply(self.status_code, self.headers, b"".join(self.chunks))

    # httptools' callbacks; once the answer is complete, whatever follows it in the same read is only noted (surplus)
    def on_message_begin(self) -> None:
        if self.complete:
            self.surplus = True
            return
        self.headers, self.chunks, self.body_bytes, self.length_known = [], [], 0, False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        self.head_bytes += len(name) + len(value)
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self.length_known = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        self.status_code = self.parser.get_status_code()
        if self.status_code in (204, 304):
            self.length_known = True

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.body_bytes += len(body)
        if self.body_bytes <= self.body_bytes_max:
            self.chunks.append(bytes(body))

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if 100 <= self.status_code < 200:  # an interim answer (101 is refused by the parser): the final one follows
            self.status_code = 0
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def reusable(self, now: float) -> bool:
        return now - self.idle_since <= IDLE_SECONDS_MAX and not self.reader.at_eof() and not self.writer.is_closing()

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
        request = _request(authority, target, body, headers)
        try:
            async with asyncio.timeout(self.timeout_seconds):
                connection, answer = await self._send(origin, authority, request)
        except TimeoutError as exc:
            raise ReplyTimeout(f"no answer from {authority} within {self.timeout_seconds} s") from exc
        self._keep_or_close(origin, connection, answer)
        return answer.reply()

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

    def _keep_or_close(self, origin: Origin, connection: _Connection, answer: _Answer) -> None:
        if answer.keep_alive and not answer.surplus:
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

    async def _send(self, origin: Origin, authority: str, request: bytes) -> tuple[_Connection, _Answer]:
        reused = self._take_idle(origin)
        if reused is not None:
            with contextlib.suppress(_NoAnswer):
                return reused, await self._exchange_on(reused, authority, request)
        fresh = await self._connect(origin)
        return fresh, await self._exchange_on(fresh, authority, request)

    async def _exchange_on(self, connection: _Connection, authority: str, request: bytes) -> _Answer:
        """One exchange on `connection`, which is closed if it fails in any way (or is cancelled)."""
        try:
            return await self._exchange(connection, authority, request)
        except BaseException:
            connection.close()
            raise

    async def _exchange(self, connection: _Connection, authority: str, request: bytes) -> _Answer:
        try:
            connection.writer.write(request)
            await connection.writer.drain()
        except OSError as exc:
            raise _NoAnswer(f"connection to {authority} failed before an answer: {exc!r}") from exc
        answer = _Answer(authority, self.reply_bytes_max)
        while not answer.complete:
            try:
                data = await connection.reader.read(READ_CHUNK_BYTES)
            except OSError as exc:
                if not answer.received:
                    raise _NoAnswer(f"connection to {authority} failed before an answer: {exc!r}") from exc
                raise TransportError(f"connection to {authority} failed: {exc!r}") from exc
            if data:
                answer.feed(data)
            elif not answer.received:
                raise _NoAnswer(f"{authority} closed the connection before answering")
            else:
                answer.end_of_connection()
        return answer


def _request(authority: str, target: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """The POST's bytes; `TransportError` for a header field that could not be sent as it is (it would change the
    request's meaning or split it), as h11 refused such a request before."""
    fields = [("Host", authority), ("User-Agent", USER_AGENT), *headers.items(), ("Content-Length", str(len(body)))]
    for name, value in fields:
        if _FIELD_NAME.fullmatch(name) is None or _FIELD_VALUE.fullmatch(value) is None:
            raise TransportError(f"refusing to send a malformed header field to {authority}: {name!r}: {value!r}")
    head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields) + "\r\n"
    return head.encode("ascii") + body


@functools.lru_cache(maxsize=256)
def _split(url: str) -> tuple[Origin, str, str]:
    """(origin, the Host header's value, the request target) of an http(s) URL; `ConnectError` for anything else.
    Cached: a channel notifies each merchant at the same few URLs."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a port out of range or not a number
        raise ConnectError(f"not a usable URL: {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"not an http(s) URL: {url!r}")
    authority = parts.netloc.rpartition("@")[2]
    if _AUTHORITY.fullmatch(authority) is None:
        raise ConnectError(f"not a usable host in {url!r}")
    target = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_TARGET_SAFE)
    return (parts.scheme, parts.hostname, port), authority, target
