"""A round-robin TCP proxy on loopback: a load balancer in front of several gateways.

Each new connection goes to the next backend in turn, so WeChat's tries of one message
(each a new connection: a timed-out try's connection is closed) land on different
instances. Bytes are piped both ways and a close on one side closes the other, so a
gateway sees WeChat hang up exactly as it would without the proxy. Written by hand: a
test needs a balancer it can observe (which backend took each connection) and make lossy.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class RoundRobinProxy:
    """``async with RoundRobinProxy([port, ...]) as proxy:`` then talk to ``proxy.url``.

    ``lose_replies``: the replies on this many first connections are lost on the way back
    (the client's connection is cut when the backend starts answering), as when a network
    drops a gateway's acknowledgement and WeChat tries again.
    """

    def __init__(self, ports: list[int], *, lose_replies: int = 0) -> None:
        self.ports = ports
        self.lose_replies = lose_replies
        self.backends: list[int] = []  # the backend index of each connection, in order
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> RoundRobinProxy:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.backends)
        backend = index % len(self.ports)
        self.backends.append(backend)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.ports[backend])
        except OSError:
            writer.close()
            return
        lose = index < self.lose_replies
        pipes = [
            asyncio.create_task(_pump(reader, up_writer)),
            asyncio.create_task(_pump(up_reader, writer, cut=lose)),
        ]
        self._pipes.update(pipes)
        try:
            # Either side closing ends the connection on both: a client that hung up is
            # gone for the backend too.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._pipes.difference_update(pipes)
            for side in (writer, up_writer):
                side.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await side.wait_closed()


async def _pump(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, cut: bool = False
) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while chunk := await source.read(65536):
            if cut:
                return
            sink.write(chunk)
            await sink.drain()
