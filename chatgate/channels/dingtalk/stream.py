"""Stream mode: a WebSocket to DingTalk's gateway that receives robot messages, no public IP needed.

Not the SDK's ``DingTalkStreamClient``: it opens connections with blocking ``requests`` (no
timeout) on the event loop and takes its endpoint from an import-time constant. So the
connection-open is an ``httpx`` call to ``CHATGATE_DINGTALK_API_BASE``, the socket is
``websockets``, and the SDK supplies what it does well: the frame models and the ack format
(``dingtalk_stream.frames``).

1. ``POST /v1.0/gateway/connections/open`` → ``{endpoint, ticket}`` (a ticket is good once).
2. Connect to ``endpoint?ticket=…``; every frame is a JSON object with ``type``, ``headers``
   and ``data`` (a JSON string).
3. A robot message (CALLBACK ``/v1.0/im/bot/messages/get``) is accepted — claimed, routed,
   recorded, which takes milliseconds — then acked with code 200, long before its answer is
   generated: a slow ack makes DingTalk deliver the message again.
4. SYSTEM ``ping`` is acked echoing its data; SYSTEM ``disconnect`` means the gateway will
   close the socket, so the client reconnects at once with a fresh ticket.
5. A watchdog pings every ``ping_interval``; no pong within ``pong_timeout`` (a socket that
   died without a close frame, a machine that slept) aborts the connection. Every end of a
   connection leads to a new one: at once after a healthy connection, else with exponential
   backoff (``backoff`` · 2ⁿ, capped, with jitter).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import quote_plus

import httpx
from dingtalk_stream.frames import (
    AckMessage,
    CallbackMessage,
    Headers,
    SystemMessage,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chatgate import __version__
from chatgate.errors import BadRequest

log = logging.getLogger(__name__)

OPEN_PATH = "/v1.0/gateway/connections/open"
BOT_TOPIC = "/v1.0/im/bot/messages/get"

MessageHandler = Callable[[dict[str, Any]], Awaitable[object]]


class StreamOpenFailed(Exception):
    """DingTalk would not open a connection (bad credentials, say)."""


def ack_frame(message_id: str, code: int, data: Any, message: str = "OK") -> str:
    """An ack in the SDK's format: ``data`` is sent as a JSON string."""
    ack = AckMessage()
    ack.code = code
    ack.headers.message_id = message_id
    ack.headers.content_type = Headers.CONTENT_TYPE_APPLICATION_JSON
    ack.message = message
    ack.data = data
    return json.dumps(cast(dict[str, Any], ack.to_dict()), ensure_ascii=False)


class StreamClient:
    """``await run()`` keeps one connection open until cancelled, handing messages to ``handle``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_base: str,
        client_id: str,
        client_secret: str,
        handle: MessageHandler,
        ping_interval: float = 20.0,
        pong_timeout: float = 10.0,
        backoff: float = 1.0,
        backoff_cap: float = 60.0,
        healthy_after: float = 30.0,
        max_in_flight: int = 100,
    ) -> None:
        self._http = http
        self._api_base = api_base.rstrip("/")
        self._client_id = client_id
        self._secret = client_secret
        self._handle = handle
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._healthy_after = healthy_after
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._handlers: set[asyncio.Task[None]] = set()
        self.connections = 0  # connections opened so far
        self._frames = 0  # frames the current connection brought
        self.connected = asyncio.Event()

    # -- the reconnect loop -------------------------------------------------------------
    async def run(self) -> None:
        failures = 0
        try:
            while True:
                loop = asyncio.get_running_loop()
                started = loop.time()
                self._frames = 0
                try:
                    endpoint, ticket = await self._open()
                    await self._session(endpoint, ticket)
                    reason = "connection closed"
                except asyncio.CancelledError:
                    raise
                except StreamOpenFailed as exc:
                    reason = str(exc)
                except (httpx.HTTPError, OSError, ConnectionClosed, TimeoutError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                except Exception as exc:  # the loop must outlive anything: log it, go on
                    log.exception("dingtalk stream: unexpected failure")
                    reason = f"{type(exc).__name__}: {exc}"
                self.connected.clear()
                # A connection that brought frames was healthy: replace it at once.
                healthy = self._frames > 0 or loop.time() - started >= self._healthy_after
                failures = 0 if healthy else failures + 1
                delay = self._delay(failures)
                log.warning("dingtalk stream: %s; reconnecting in %.1f s", reason, delay)
                await asyncio.sleep(delay)
        finally:
            for task in self._handlers:
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

    def _delay(self, failures: int) -> float:
        if failures == 0:
            return 0.0
        base = min(self._backoff_cap, self._backoff * 2.0 ** (failures - 1))
        return base + random.uniform(0, min(1.0, self._backoff))

    async def _open(self) -> tuple[str, str]:
        body = {
            "clientId": self._client_id,
            "clientSecret": self._secret,
            "subscriptions": [{"type": "CALLBACK", "topic": BOT_TOPIC}],
            "ua": f"chatgate/{__version__}",
            "localIp": "",
        }
        response = await self._http.post(self._api_base + OPEN_PATH, json=body)
        if not response.is_success:
            raise StreamOpenFailed(f"connections/open → {response.status_code} {response.text}")
        data = response.json()
        endpoint, ticket = data.get("endpoint"), data.get("ticket")
        if not isinstance(endpoint, str) or not isinstance(ticket, str):
            raise StreamOpenFailed(f"connections/open gave no endpoint and ticket: {data}")
        return endpoint, ticket

    # -- one connection -----------------------------------------------------------------
    async def _session(self, endpoint: str, ticket: str) -> None:
        """Serve one connection until it ends, counting its frames in ``_frames``."""
        uri = f"{endpoint}?ticket={quote_plus(ticket)}"
        async with connect(
            uri, ping_interval=None, open_timeout=10, close_timeout=5, max_size=4 * 2**20
        ) as ws:
            self.connections += 1
            self.connected.set()
            log.info("dingtalk stream connected (connection %d)", self.connections)
            watchdog = asyncio.create_task(self._watchdog(ws), name="dingtalk-stream-watchdog")
            try:
                async for raw in ws:
                    self._frames += 1
                    if await self._on_frame(ws, raw) == "disconnect":
                        break
            finally:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog

    async def _watchdog(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            try:
                # ping() itself can block once the socket stops draining: time both halves.
                async with asyncio.timeout(self._pong_timeout):
                    pong = await ws.ping()
                    await pong
            except TimeoutError:
                log.warning("dingtalk stream: no pong in %.0f s; dropping it", self._pong_timeout)
                ws.transport.abort()
                return
            except ConnectionClosed:
                return

    async def _on_frame(self, ws: ClientConnection, raw: str | bytes) -> str:
        try:
            frame = json.loads(raw)
            kind = frame.get("type") if isinstance(frame, dict) else None
        except ValueError:
            log.warning("dingtalk stream: a frame that is not JSON: %r", raw[:200])
            return ""
        if kind == SystemMessage.TYPE:
            return await self._on_system(ws, SystemMessage.from_dict(frame))
        if kind == CallbackMessage.TYPE:
            try:
                message = CallbackMessage.from_dict(frame)
            except ValueError:
                log.warning("dingtalk stream: callback data is not JSON: %r", raw[:200])
                message_id = frame.get("headers", {}).get("messageId", "")
                await self._ack(ws, ack_frame(message_id, 400, {"response": None}, "bad data"))
                return ""
            await self._in_flight.acquire()
            task = asyncio.create_task(self._on_callback(ws, message))
            self._handlers.add(task)
            task.add_done_callback(self._handled)
            return ""
        # Events are not subscribed to; should one come, acknowledge it so it is not resent.
        message_id = frame.get("headers", {}).get("messageId", "")
        status = {"status": "SUCCESS", "message": "ignored"}
        await self._ack(ws, ack_frame(message_id, 200, status))
        return ""

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._handlers.discard(task)
        self._in_flight.release()

    async def _on_system(self, ws: ClientConnection, message: Any) -> str:
        topic = message.headers.topic
        if topic == "disconnect":
            log.info("dingtalk stream: the gateway asks to reconnect")
            return "disconnect"
        # ping (and anything else): ack echoing the data, as the protocol asks for ping.
        await self._ack(ws, ack_frame(message.headers.message_id, 200, message.data))
        return ""

    async def _on_callback(self, ws: ClientConnection, message: Any) -> None:
        message_id = message.headers.message_id
        if message.headers.topic != BOT_TOPIC:
            await self._ack(ws, ack_frame(message_id, 404, {"response": None}, "unknown topic"))
            return
        code, note = 200, "OK"
        try:
            await self._handle(message.data)
        except BadRequest as exc:
            # Sending it again would not make it better: acknowledge and drop it.
            log.warning("dingtalk stream: dropping a malformed message: %s", exc)
        except Exception:
            # 500 asks DingTalk to deliver it again; the msgId claim keeps that to one answer.
            log.exception("dingtalk stream: a message could not be accepted")
            code, note = 500, "error"
        await self._ack(ws, ack_frame(message_id, code, {"response": None}, note))

    async def _ack(self, ws: ClientConnection, frame: str) -> None:
        try:
            await ws.send(frame)
        except ConnectionClosed:
            # The gateway delivers unacked messages again, on the next connection.
            log.info("dingtalk stream: connection closed before an ack went out")
