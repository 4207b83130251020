"""Whether a webhook's HTTP client has gone away, watched only while somebody waits for it."""

from __future__ import annotations

from typing import Protocol

from starlette.types import Receive


class Disconnect(Protocol):
    """What a window strategy needs to know of the connection (``asyncio.Event`` fits too)."""

    def is_set(self) -> bool: ...

    async def wait(self) -> object: ...


class ClientGone:
    """Set once the ASGI server reports ``http.disconnect``, after the body has been read.

    Nothing watches until ``wait`` is called: most replies go out at once and never ask, and a
    watcher task per request was a measurable share of a push-mode acknowledgement. The server
    keeps the disconnect until it is received, so a late ``wait`` still sees one that came
    earlier. One waiter at a time, as the window strategies use it.
    """

    __slots__ = ("_gone", "_receive")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._gone = False

    def is_set(self) -> bool:
        return self._gone

    async def wait(self) -> bool:
        while not self._gone:
            message = await self._receive()
            self._gone = message["type"] == "http.disconnect"
        return True
