"""The fake DingTalk Stream gateway: tickets, a WebSocket per client, callback frames and acks.

Behaves as the spec describes DingTalk's: ``connections/open`` hands out a ticket valid 90 s
and good for one connection; each push goes to one randomly chosen open connection; a frame
not acked with code 200 within ``ack_timeout`` (or whose connection died first) is delivered
again, as a new frame with a new ``messageId`` and the same ``data``, up to
``max_redeliveries`` times. Pushes made while no client is connected wait for one. Faults to
test a client with: ``drop`` (connections die, with or without a close frame), ``stall`` (the
gateway stops reading: pings go unanswered) and ``disconnect`` (the SYSTEM frame DingTalk
sends before it closes a connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from chatgate.sim.dingtalk_records import Ack

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
BOT_TOPIC = "/v1.0/im/bot/messages/get"
TICKET_TTL = 90.0
DISCONNECT_GRACE = 10.0


@dataclass
class _Ticket:
    value: str
    client_id: str
    expires: float
    used: bool = False


@dataclass
class Connection:
    """One client connection as the gateway sees it."""

    id: str
    ws: ServerConnection
    opened_at: float
    stalled: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    frames_sent: int = 0


@dataclass
class Push:
    """A callback the gateway must get acked; ``attempts`` counts frames sent for it."""

    topic: str
    data: dict[str, Any]
    kind: str = "CALLBACK"
    attempts: int = 0
    frame_ids: list[str] = field(default_factory=list)
    acked: asyncio.Event = field(default_factory=asyncio.Event)  # with 200, in time
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # any ack, even late
    lost: bool = False
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # acked in time, or lost


class StreamGateway:
    """``await start()``, then clients open connections through ``open_connection``."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        ack_timeout: float = 10.0,
        max_redeliveries: int = 3,
        ticket_ttl: float = TICKET_TTL,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.ack_timeout = ack_timeout
        self.max_redeliveries = max_redeliveries
        self.ticket_ttl = ticket_ttl
        self.connections: list[Connection] = []
        self.opened = 0  # connections accepted so far
        self.refused: list[str] = []  # why handshakes were refused
        self.subscriptions: list[list[dict[str, str]]] = []
        self.acks: list[Ack] = []
        self.ack_received = asyncio.Event()  # set by every ack; clear it to wait for the next
        self.bad_acks: list[str] = []
        self.pushes: list[Push] = []
        self._push_of: dict[str, Push] = {}  # frame id → its push
        self._tickets: dict[str, _Ticket] = {}
        self._waiters: dict[str, asyncio.Future[Ack]] = {}
        self._changed = asyncio.Condition()
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await serve(
            self._handle, HOST, 0, process_request=self._check_ticket, ping_interval=None
        )
        self._port = int(next(iter(self._server.sockets)).getsockname()[1])

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            for conn in list(self.connections):
                conn.ws.transport.abort()
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def endpoint(self) -> str:
        if self._port is None:
            raise RuntimeError("the gateway is not running")
        return f"ws://{HOST}:{self._port}/connect"

    # -- connection open (called by the HTTP API) ------------------------------------------
    def open_connection(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /v1.0/gateway/connections/open``: credentials in, endpoint and ticket out."""
        if body.get("clientId") != self.client_id or body.get("clientSecret") != (
            self.client_secret
        ):
            return 401, {"code": "invalidClientIdOrSecret", "message": "bad client id or secret"}
        subscriptions = body.get("subscriptions")
        if not isinstance(subscriptions, list) or not subscriptions:
            return 400, {"code": "invalidParameter", "message": "subscriptions are required"}
        self.subscriptions.append(subscriptions)
        ticket = secrets.token_urlsafe(24) + "+/="  # needs URL-encoding, as real ones may
        self._tickets[ticket] = _Ticket(ticket, self.client_id, time.time() + self.ticket_ttl)
        return 200, {"endpoint": self.endpoint, "ticket": ticket}

    def _check_ticket(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        tickets = parse_qs(url.query).get("ticket", [])
        ticket = self._tickets.get(tickets[0]) if tickets else None
        problem = ""
        if url.path != "/connect":
            problem = f"unknown path {url.path}"
        elif ticket is None:
            problem = "unknown ticket"
        elif ticket.used:
            problem = "ticket already used"
        elif ticket.expires < time.time():
            problem = "ticket expired"
        if problem:
            self.refused.append(problem)
            return conn.respond(HTTPStatus.FORBIDDEN, problem + "\n")
        assert ticket is not None
        ticket.used = True
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Connection(secrets.token_hex(8), ws, time.monotonic())
        self.connections.append(conn)
        self.opened += 1
        await self._notify()
        try:
            async for raw in ws:
                self._on_client_frame(raw)
        except ConnectionClosed:
            pass
        finally:
            conn.closed.set()
            self.connections.remove(conn)
            await self._notify()

    def _on_client_frame(self, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
            code = int(frame["code"])
            message_id = str(frame["headers"]["messageId"])
            data = frame.get("data", "")
            if not isinstance(data, str):
                raise ValueError("data must be a JSON string")
            json.loads(data or "null")
        except (ValueError, KeyError, TypeError) as exc:
            self.bad_acks.append(f"{exc!r}: {raw!r}")
            return
        waiter = self._waiters.pop(message_id, None)
        ack = Ack(message_id, code, time.monotonic(), waiter is None, data)
        self.acks.append(ack)
        self.ack_received.set()
        push = self._push_of.get(message_id)
        if push is not None:
            push.answered.set()
        if waiter is not None and not waiter.done():
            waiter.set_result(ack)
        elif push is None and not message_id.startswith("sys-"):
            self.bad_acks.append(f"ack for unknown messageId {message_id}")

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- pushing frames --------------------------------------------------------------------
    def push(self, data: dict[str, Any], topic: str = BOT_TOPIC) -> Push:
        """Deliver ``data`` as a callback until acked in time; returns its tracking record."""
        push = Push(topic, data)
        self.pushes.append(push)
        task = asyncio.create_task(self._deliver(push), name=f"sim-push-{len(self.pushes)}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return push

    async def _live_connection(self) -> Connection:
        async with self._changed:
            while True:
                live = [c for c in self.connections if not c.stalled and not c.closed.is_set()]
                if live:
                    return random.choice(live)
                await self._changed.wait()

    async def _deliver(self, push: Push) -> None:
        try:
            await self._attempts(push)
        finally:
            push.settled.set()

    async def _attempts(self, push: Push) -> None:
        while push.attempts <= self.max_redeliveries:
            conn = await self._live_connection()
            frame_id = f"msg-{secrets.token_hex(8)}"
            waiter: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
            self._waiters[frame_id] = waiter
            push.frame_ids.append(frame_id)
            self._push_of[frame_id] = push
            push.attempts += 1
            frame = self._frame(push.kind, push.topic, frame_id, conn, push.data)
            try:
                await conn.ws.send(frame)
                conn.frames_sent += 1
            except ConnectionClosed:
                self._waiters.pop(frame_id, None)
                continue
            closed: asyncio.Future[Any] = asyncio.ensure_future(conn.closed.wait())
            pending: set[asyncio.Future[Any]] = {waiter, closed}
            try:
                await asyncio.wait(
                    pending, timeout=self.ack_timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                closed.cancel()
            if waiter.done() and waiter.result().code == 200:
                push.acked.set()
                return
            # No ack in time (or a failure code, or the connection died): deliver it again.
            # A late ack for this frame is still recorded, marked late.
            self._waiters.pop(frame_id, None)
        push.lost = True
        log.warning("sim gateway gave up on a push after %d attempts", push.attempts)

    def _frame(
        self, kind: str, topic: str, frame_id: str, conn: Connection, data: dict[str, Any]
    ) -> str:
        return json.dumps(
            {
                "specVersion": "1.0",
                "type": kind,
                "headers": {
                    "appId": self.client_id,
                    "connectionId": conn.id,
                    "contentType": "application/json",
                    "messageId": frame_id,
                    "time": str(int(time.time() * 1000)),
                    "topic": topic,
                },
                "data": json.dumps(data, ensure_ascii=False),
            },
            ensure_ascii=False,
        )

    # -- system frames and faults ----------------------------------------------------------
    async def system_ping(self, within: float = 5.0) -> bool:
        """Send SYSTEM ping to every connection; true when each acked it echoing ``opaque``."""
        ok = True
        for conn in list(self.connections):
            opaque = secrets.token_hex(8)
            frame_id = f"sys-{secrets.token_hex(8)}"
            waiter: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
            self._waiters[frame_id] = waiter
            frame = self._system_frame("ping", frame_id, conn, {"opaque": opaque})
            try:
                await conn.ws.send(frame)
                async with asyncio.timeout(within):
                    ack = await waiter
            except (ConnectionClosed, TimeoutError):
                return False
            finally:
                self._waiters.pop(frame_id, None)
            ok = ok and ack.code == 200 and json.loads(ack.data or "{}").get("opaque") == opaque
        return ok

    def _system_frame(
        self, topic: str, frame_id: str, conn: Connection, data: dict[str, Any]
    ) -> str:
        return self._frame("SYSTEM", topic, frame_id, conn, data)

    async def disconnect(self, grace: float = DISCONNECT_GRACE) -> None:
        """SYSTEM ``disconnect`` to every connection, then close each ``grace`` s later."""
        conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(self._system_frame("disconnect", f"sys-{conn.id}", conn, {}))
        for conn in conns:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await conn.closed.wait()
            if not conn.closed.is_set():
                await conn.ws.close(1000, "disconnect")

    async def drop(self, *, abrupt: bool = True) -> int:
        """Kill every connection: abruptly (no close frame) or with a 1001 close."""
        conns = list(self.connections)
        for conn in conns:
            if abrupt:
                conn.ws.transport.abort()
            else:
                await conn.ws.close(1001, "going away")
        for conn in conns:
            await conn.closed.wait()
        return len(conns)

    def stall(self) -> int:
        """Stop reading from every connection: pings go unanswered, acks unread, no pushes."""
        for conn in self.connections:
            conn.stalled = True
            conn.ws.transport.pause_reading()
        return len(self.connections)

    async def wait_connections(self, count: int, within: float = 10.0) -> None:
        """Until ``count`` connections have been accepted in all (``opened``)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: self.opened >= count)

    @property
    def live(self) -> int:
        return sum(1 for c in self.connections if not c.stalled and not c.closed.is_set())
