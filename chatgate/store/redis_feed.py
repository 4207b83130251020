"""Redis pub/sub for one store: channels subscribed while someone waits on them.

Writers ``PUBLISH`` to an answer's channel on every change (and to a lock's on release). A
waiter enters ``Subscriptions.hold(channel)``, which returns once Redis has *confirmed* the
subscription; only then does the waiter read the record and start waiting, so a change
made after its read always reaches it. Channels stay subscribed a few seconds after their
last waiter leaves: WeChat's next try usually comes within that and finds them ready.

One connection serves every channel. redis-py reconnects it and re-subscribes by itself,
the always-held ``alive`` channel first in the same command; when that channel's
confirmation comes again, Redis has all subscriptions back, and every waiter is woken to
read again, since a change may have been published while the connection was down.
Waiters also re-read now and then anyway (the store's poll interval), the last safety net
should a notification ever be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# How long a waiter waits for Redis to confirm its subscription before reading anyway.
CONFIRM_LIMIT = 2.0
# How long a channel stays subscribed after its last waiter left.
LINGER = 10.0
_READ_TIMEOUT = 1.0
_BACKOFF_MAX = 2.0


@dataclass
class _Channel:
    users: int = 0
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    idle_since: float | None = None


class Subscriptions:
    """Reference-counted subscriptions on one pub/sub connection, and the task reading it.

    ``on_message(channel, data)`` is called for every message published to a held channel;
    ``on_reconnect()`` after the connection came back (read everything again).
    """

    def __init__(
        self,
        client: Redis,
        alive_channel: str,
        on_message: Callable[[str, str], None],
        on_reconnect: Callable[[], None],
        *,
        linger: float = LINGER,
    ) -> None:
        self._client = client
        self._alive = alive_channel
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._linger = linger
        self._channels: dict[str, _Channel] = {}
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()
        self._connected = asyncio.Event()
        self._next_drop = 0.0

    async def start(self) -> None:
        """Open the connection and start reading; returns once Redis confirmed it."""
        pubsub = self._client.pubsub()
        self._pubsub = pubsub
        await pubsub.subscribe(self._alive)
        self._reader = asyncio.create_task(self._read_forever(pubsub), name="redis-pubsub")
        async with asyncio.timeout(CONFIRM_LIMIT * 5):
            await self._connected.wait()

    async def stop(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        self._channels.clear()

    def __len__(self) -> int:
        """How many channels are subscribed (held or lingering)."""
        return len(self._channels)

    @contextlib.asynccontextmanager
    async def hold(self, channel: str, within: float = CONFIRM_LIMIT) -> AsyncIterator[None]:
        """Subscribed to ``channel`` for the body, which starts once Redis confirmed it.

        After ``within`` seconds without a confirmation (Redis down, say) the body starts
        anyway; the store's poll interval is then what notices changes.
        """
        async with self._sending:
            state = self._channels.get(channel)
            if state is None:
                state = self._channels[channel] = _Channel()
                await self._send("subscribe", channel)
            state.users += 1
            state.idle_since = None
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await state.confirmed.wait()
            yield
        finally:
            state.users -= 1
            if state.users == 0:
                state.idle_since = asyncio.get_running_loop().time()

    async def _send(self, command: str, channel: str) -> None:
        """Send (un)subscribe; the caller holds ``_sending``, so commands keep their order."""
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            if command == "subscribe":
                await pubsub.subscribe(channel)
            else:
                await pubsub.unsubscribe(channel)
        except (RedisError, OSError) as exc:
            # redis-py subscribes again whatever it knows of once the connection is back.
            log.warning("redis pub/sub: %s %s failed: %s", command, channel, exc)

    async def _read_forever(self, pubsub: PubSub) -> None:
        backoff = 0.05
        while True:
            try:
                message = await pubsub.get_message(timeout=_READ_TIMEOUT)
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("redis pub/sub connection lost (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            if message is not None:
                if message.get("type") == "subscribe" and message.get("channel") == self._alive:
                    if self._connected.is_set():
                        await self._back_online()
                    self._connected.set()
                else:
                    self._dispatch(message)
            await self._drop_idle()

    async def _back_online(self) -> None:
        """After a reconnect: subscribe what never got confirmed, and wake every waiter."""
        log.info("redis pub/sub: subscriptions are back after a reconnect")
        async with self._sending:
            for name, state in self._channels.items():
                if not state.confirmed.is_set():
                    await self._send("subscribe", name)
        self._on_reconnect()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        if kind == "message" and isinstance(channel, str):
            self._on_message(channel, str(message.get("data") or ""))
        elif kind == "subscribe" and isinstance(channel, str):
            state = self._channels.get(channel)
            if state is not None:
                state.confirmed.set()

    def _idle(self) -> list[str]:
        now = asyncio.get_running_loop().time()
        return [
            name
            for name, state in self._channels.items()
            if state.users == 0
            and state.idle_since is not None
            and now - state.idle_since >= self._linger
            # Only confirmed ones: the next subscribe confirmation must be a new one's.
            and state.confirmed.is_set()
        ]

    async def _drop_idle(self) -> None:
        # At most about once a second: a busy gateway holds thousands of channels.
        now = asyncio.get_running_loop().time()
        if now < self._next_drop:
            return
        self._next_drop = now + 1.0
        if not self._idle():
            return
        async with self._sending:
            for name in self._idle():
                del self._channels[name]
                await self._send("unsubscribe", name)
