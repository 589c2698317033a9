"""A TCP load balancer for the launcher's replicas: what a Kubernetes Service (kube-proxy) does in a cluster.

With `--replicas N` every service runs N API processes on ports of their own, and the service's usual port
is this balancer: callers (the gateway, service-to-service clients, the sandboxes' notifications, the
merchant) keep one URL per service, exactly as with a Kubernetes Service name. Each new connection goes to
the next replica (round-robin); a replica that refuses the connection (killed, restarting) is skipped at
once, so no request is sent to it. A connection stays with its replica for its lifetime (keep-alive); when
the replica dies the connection is closed, as a real balancer would: an exchange in flight fails and the
caller retries with the same Idempotency-Key.

Plain asyncio streams, no HTTP parsing: it adds one hop of copying and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

CONNECT_TIMEOUT_SECONDS = 2.0
CHUNK_BYTES = 65_536


class Balancer:
    """Round-robin over `backends` (ports on 127.0.0.1) with failover on connect errors."""

    def __init__(self, name: str, port: int, backends: list[int]) -> None:
        self.name = name
        self.port = port
        self.backends = backends
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.connects_failed = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            upstream = await self._connect()
            if upstream is None:
                return  # every replica refused: the caller sees a closed connection, as with no endpoint
            up_reader, up_writer = upstream
            try:
                await _splice(reader, writer, up_reader, up_writer)
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._connections.discard(task)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        start = next(self._turn)
        for offset in range(len(self.backends)):
            port = self.backends[(start + offset) % len(self.backends)]
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    return await asyncio.open_connection("127.0.0.1", port)
            except (OSError, TimeoutError):
                self.connects_failed += 1
        return None


async def _splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until either side closes; then both are closed (no half-open keep-alive)."""
    copies = [asyncio.create_task(_copy(reader, up_writer)), asyncio.create_task(_copy(up_reader, writer))]
    try:
        await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for copy in copies:
            copy.cancel()
        await asyncio.gather(*copies, return_exceptions=True)


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(CHUNK_BYTES):
            sink.write(data)
            await sink.drain()
