"""`KeepAliveTransport` (libs/common/keepalive.py) under httpx against real servers: uvicorn for the ordinary exchange,
raw asyncio servers scripting what a broken or hostile peer sends, and a TLS server with its own CA for SNI and the
certificate check. Each failure must be httpx's own exception, raised where httpcore raises it, so every caller's
error handling stays right (docs/adr/0003-hand-written-upstream-http-pool.md)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from libs.common.http import JsonServiceClient
from libs.common.keepalive import KeepAliveClient, KeepAliveTransport, ResponseTooLarge
from libs.common.logging import trace_id_var
from libs.common.testing.infra import serve_app
from libs.common.testing.waiting import eventually

DEAD_URL = "http://127.0.0.1:9"
peers: set[int] = set()


async def echo(request: Request) -> Response:
    assert request.client is not None
    peers.add(request.client.port)
    body = await request.body()
    return Response(f"{request.method} {request.url.path}?{request.url.query} {request.headers.get('x-test')} {body!r}")


async def chunked(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two,", b"three"):
            yield part

    return StreamingResponse(parts())


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("s", "2")))
    return Response("late")


async def big(request: Request) -> Response:
    return Response(b"x" * 200_000)


APP = Starlette(
    routes=[
        Route("/echo/{rest:path}", echo, methods=["GET", "HEAD", "POST", "PUT"]),
        Route("/chunked", chunked),
        Route("/slow", slow),
        Route("/big", big),
    ]
)


def client(base_url: str, **options: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, transport=KeepAliveTransport(**options), timeout=5)  # type: ignore[arg-type]


async def test_exchanges_over_one_kept_connection_with_streamed_and_chunked_bodies() -> None:
    async with serve_app(APP) as url, client(url) as http:
        peers.clear()
        posted = await http.post("/echo/a%2Fb?x=1&y=%C3%A9", json={"a": 1}, headers={"X-Test": "hi"})
        assert posted.status_code == 200 and posted.http_version == "HTTP/1.1"
        assert posted.text == "POST /echo/a/b?x=1&y=%C3%A9 hi b'{\"a\":1}'"

        async def body() -> AsyncIterator[bytes]:
            yield b"str"
            yield b"eamed"

        put = await http.put("/echo/s", content=body())  # a streamed request body goes out chunked
        assert put.text == "PUT /echo/s? None b'streamed'"
        for _ in range(3):
            assert (await http.get("/echo/r")).text == "GET /echo/r? None b''"
        head = await http.head("/echo/r")
        assert head.status_code == 200 and head.content == b""
        assert (await http.get("/chunked")).content == b"one,two,three"
        async with http.stream("GET", "/big") as response:
            read = [len(chunk) async for chunk in response.aiter_raw()]
        assert sum(read) == 200_000
        assert len(peers) == 1  # every exchange on one keep-alive connection


async def test_failures_are_httpx_exceptions_where_httpcore_raises_them() -> None:
    with pytest.raises(httpx.ConnectError):
        async with client(DEAD_URL) as http:
            await http.post("/v1/payments", json={})
    async with serve_app(APP) as url:
        async with client(url) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get("/slow", params={"s": "0.6"}, timeout=httpx.Timeout(5, read=0.2))
            with pytest.raises(httpx.LocalProtocolError):  # a header that could split the request is never written
                await http.get("/echo/x", headers={"X-Test": "a\r\nX-Evil: 1"})
            with pytest.raises(httpx.UnsupportedProtocol):
                await http.get("ftp://127.0.0.1/x")
        async with client(url, response_bytes_max=100_000) as http:
            with pytest.raises(ResponseTooLarge):
                await http.get("/big")
            assert (await http.get("/echo/after")).status_code == 200
        async with client(url, connections_max=1) as http:
            async with http.stream("GET", "/slow", params={"s": "0"}):  # holds the only connection until closed
                with pytest.raises(httpx.PoolTimeout):
                    await http.get("/echo/x", timeout=httpx.Timeout(5, pool=0.1))
            assert (await http.get("/echo/x")).status_code == 200


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _scripted(handle: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def _answering(*answers: bytes) -> Handler:
    """Reads a request head and writes the next answer, per request, on one connection; then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        writer.close()

    return handle


async def test_broken_peers_are_remote_protocol_errors_and_their_connections_not_reused() -> None:
    for answer in (b"", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", b"garbage\r\n\r\n"):
        server, url = await _scripted(_answering(answer))
        try:
            async with client(url) as http:
                with pytest.raises(httpx.RemoteProtocolError):
                    await http.get("/x")
        finally:
            server.close()
    connections = 0

    async def extra_bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")  # a whole answer, then a second one nobody asked for
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
        await writer.drain()
        await reader.read()  # keeps the connection open until the client closes it

    server, url = await _scripted(extra_bytes)
    try:
        async with client(url) as http:
            answers = [await http.get("/x") for _ in range(2)]
        assert [(a.text, a.headers["content-length"]) for a in answers] == [("ok", "2"), ("ok", "2")]
    finally:
        server.close()
    assert connections == 2  # the stale answer was never read as the second request's

    late_written = asyncio.Event()

    async def late_bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        if connections == 3:  # after the answer, while the connection idles in the client's pool: a 408
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            late_written.set()
        await reader.read()

    server, url = await _scripted(late_bytes)
    transport = KeepAliveTransport()
    try:
        async with httpx.AsyncClient(base_url=url, transport=transport, timeout=5) as http:
            assert (await http.get("/x")).text == "ok"
            await late_written.wait()
            (origin,) = transport._origins.values()
            await eventually(lambda: origin.idle[0].reader.fed > origin.idle[0].received, "the 408 reached the client")
            second = await http.get("/x")
        assert (second.status_code, second.text) == (200, "ok")  # not the 408
    finally:
        server.close()
    assert connections == 4


def _certificates(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A CA and a certificate for `hooks.test` it signed: the server's context and a client's trusting the CA."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "key.pem")
    client_context = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server_context, client_context


async def test_tls_to_a_pinned_address_verifies_the_certificate_for_the_sni_name(tmp_path: Path) -> None:
    server_context, client_context = _certificates(tmp_path)
    names: list[str | None] = []

    def sni(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        names.append(name)

    server_context.sni_callback = sni
    server = await asyncio.start_server(
        _answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), "127.0.0.1", 0, ssl=server_context
    )
    port = server.sockets[0].getsockname()[1]
    address = ipaddress.ip_address("127.0.0.1")
    try:
        async with httpx.AsyncClient(transport=KeepAliveTransport(tls=client_context), timeout=5) as http:
            pinned = httpx.Request("GET", f"https://{address}:{port}/hook", headers={"Host": f"hooks.test:{port}"})
            pinned.extensions["sni_hostname"] = "hooks.test"
            assert (await http.send(pinned)).text == "ok"
            assert names == ["hooks.test"]
            wrong = httpx.Request("GET", f"https://{address}:{port}/hook", extensions={"sni_hostname": "other.test"})
            with pytest.raises(httpx.ConnectError):  # the certificate is not for that name
                await http.send(wrong)
            with pytest.raises(httpx.ConnectError):  # nor for the bare address
                await http.get(f"https://{address}:{port}/hook")
        for name, answered in (("hooks.test", True), ("other.test", False)):  # the lean call, pinned the same way
            lean = KeepAliveClient(
                f"https://{address}:{port}", timeout_seconds=5, tls=client_context, server_hostname=name
            )
            try:
                if answered:
                    assert (await lean.request("POST", "/hook", content=b"{}")).content == b"ok"
                else:
                    with pytest.raises(httpx.ConnectError):
                        await lean.request("POST", "/hook", content=b"{}")
            finally:
                await lean.aclose()
        assert names[-2:] == ["hooks.test", "other.test"]
    finally:
        server.close()


async def test_the_lean_call_reuses_its_connection_and_sends_json_as_httpx_does() -> None:
    """`JsonServiceClient` on `KeepAliveClient`: the body httpx's `json=` would send, `Content-Type`, the caller's
    headers and `X-Trace-Id`, a path percent-encoded where it must be, one kept connection for every call."""
    async with serve_app(APP) as url:
        peers.clear()
        service = JsonServiceClient(url + "/echo", timeout_seconds=5)
        token = trace_id_var.set("ab" * 16)
        try:
            answer = await service.post("/a b/é?x=1", json={"name": "é", "n": 1}, headers={"X-Test": "hi"})
            assert answer.status_code == 200
            body = json.dumps({"name": "é", "n": 1}, ensure_ascii=False, separators=(",", ":")).encode()
            assert answer.content.decode() == f"POST /echo/a b/é?x=1 hi {body!r}"
            assert (await service.post("/empty")).content == b"POST /echo/empty? None b''"
        finally:
            trace_id_var.reset(token)
            await service.aclose()
        assert len(peers) == 1

        seen: dict[str, str] = {}

        async def headers(request: Request) -> Response:
            seen.update(request.headers)
            return Response("{}", media_type="application/json")

        async with serve_app(Starlette(routes=[Route("/h", headers, methods=["POST"])])) as other:
            service = JsonServiceClient(other)
            token = trace_id_var.set("cd" * 16)
            try:
                assert (await service.post("/h", json=[1])).json() == {}
            finally:
                trace_id_var.reset(token)
                await service.aclose()
        assert seen["content-type"] == "application/json" and seen["x-trace-id"] == "cd" * 16
        assert seen["host"] == other.removeprefix("http://") and seen["content-length"] == "3"


async def test_the_lean_call_fails_with_httpx_exceptions_and_caps_what_it_reads() -> None:
    with pytest.raises(httpx.ConnectError):
        await KeepAliveClient(DEAD_URL, timeout_seconds=5).request("POST", "/v1/payments")
    async with serve_app(APP) as url:
        lean = KeepAliveClient(url, timeout_seconds=0.3, response_bytes_max=100_000)
        try:
            with pytest.raises(httpx.ReadTimeout):
                await lean.request("GET", "/slow?s=1")
            with pytest.raises(httpx.LocalProtocolError):  # never written
                await lean.request("GET", "/echo/x", headers={"X-Test": "a\r\nX-Evil: 1"})
            with pytest.raises(ResponseTooLarge):
                await lean.request("GET", "/big")
            peers.clear()
            await lean.request("GET", "/echo/before")
            capped = await lean.request("GET", "/big", read_bytes_max=1_000)  # only the status matters
            assert capped.status_code == 200 and 1_000 <= len(capped.content) < 200_000
            assert (await lean.request("GET", "/echo/after")).content == b"GET /echo/after? None b''"
            assert len(peers) == 2  # the capped answer's connection (the first) was not reused: the rest was unread
        finally:
            await lean.aclose()
    with pytest.raises(ValueError):
        KeepAliveClient("ftp://127.0.0.1/x", timeout_seconds=5)
