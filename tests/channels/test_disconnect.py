"""ClientGone: a webhook client's disconnect, received only once somebody waits for it."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from chatgate.channels.disconnect import ClientGone


class Messages:
    """An ASGI ``receive`` that hands out the given messages, then blocks for ever."""

    def __init__(self, *messages: Message) -> None:
        self._messages = list(messages)
        self.calls = 0

    async def __call__(self) -> Message:
        self.calls += 1
        if self._messages:
            return self._messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_nothing_is_received_until_somebody_waits() -> None:
    receive = Messages({"type": "http.disconnect"})
    gone = ClientGone(receive)
    assert not gone.is_set()
    assert receive.calls == 0


async def test_wait_returns_once_the_server_reports_the_disconnect() -> None:
    # A stray body chunk before it (a client that sent more) is passed over.
    receive = Messages({"type": "http.request", "body": b""}, {"type": "http.disconnect"})
    gone = ClientGone(receive)
    assert await gone.wait()
    assert gone.is_set()
    assert receive.calls == 2
    await gone.wait()  # known already: nothing more received
    assert receive.calls == 2


async def test_a_connected_client_keeps_the_waiter_waiting_and_it_can_be_cancelled() -> None:
    gone = ClientGone(Messages())
    waiter = asyncio.ensure_future(gone.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert not gone.is_set()
