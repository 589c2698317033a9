"""The launcher's replica balancer (deploy/launcher/balancer.py) with real sockets: round-robin per connection,
a replica that refuses connections is skipped, and a connection whose replica dies is closed, not hung."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from libs.common.embedded import free_port
from libs.common.services import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))  # `deploy` is not an installed package (it runs as `python -m deploy.…`)
from deploy.launcher.balancer import Balancer

READ_SECONDS = 10.0


class Replica:
    """Answers every line with its name (the connection kept open); `kill` drops everything at once."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.port = free_port()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> Replica:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while await reader.readline():
            writer.write(self.name + b"\n")
            await writer.drain()
        writer.close()

    async def kill(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[list[Replica], Balancer]]:
    servers = [await Replica(b"a").start(), await Replica(b"b").start()]
    balancer = Balancer("svc", free_port(), [s.port for s in servers])
    await balancer.start()
    try:
        yield servers, balancer
    finally:
        await balancer.stop()
        for server in servers:
            await server.kill()


async def ask(port: int) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"who\n")
    await writer.drain()
    async with asyncio.timeout(READ_SECONDS):
        return (await reader.readline()).strip(), reader, writer


async def test_round_robin_and_failover_on_a_refused_connection(
    replicas: tuple[list[Replica], Balancer],
) -> None:
    servers, balancer = replicas
    answers = []
    for _ in range(4):
        name, _, writer = await ask(balancer.port)
        answers.append(name)
        writer.close()
    assert sorted(answers) == [b"a", b"a", b"b", b"b"]

    await servers[0].kill()  # replica a is gone: every new connection lands on b, none fails
    for _ in range(3):
        name, _, writer = await ask(balancer.port)
        assert name == b"b"
        writer.close()
    assert balancer.connects_failed >= 1


async def test_a_connection_to_a_dying_replica_is_closed(replicas: tuple[list[Replica], Balancer]) -> None:
    servers, balancer = replicas
    name, reader, writer = await ask(balancer.port)
    await (servers[0] if name == b"a" else servers[1]).kill()  # SIGKILLed: its open connections drop
    async with asyncio.timeout(READ_SECONDS):
        assert await reader.read() == b""  # the caller sees the connection end (and retries), it does not hang
    writer.close()
