"""Webhook acknowledgement in push mode, against a bare Starlette hello-world served the same way.

    python bench/ack.py [--store sqlite|memory] [--messages 2000] [--in-flight 200] [--rate 100]

Both servers run as child processes under uvicorn on loopback; the client in this process
sends signed WeChat text messages and times each request until its `success`. The gateway runs
for real: push mode, the offline fake model, and a fake WeChat API (served by this process)
that receives the pushes, so answer jobs and pushes compete with the acknowledgements as they
would in production.

Two loads per server: saturated (`--in-flight` requests always outstanding: throughput, and
latency that is mostly queueing, about in-flight / throughput) and paced (`--rate` messages a
second, open loop: the latency of one acknowledgement at a steady load). Target: at least 0.5
of the bare server's throughput, p99 under 50 ms.

Acknowledgements go before background work (``core.precedence``), so during the saturated run
most answers wait; a line says how many were pushed by the last acknowledgement and how long
the backlog took after it (the fake model streams each answer for a fraction of a second, at
most ``CHATGATE_LLM_CONCURRENCY`` at once). The saturated run starts once the answers of the
runs before it are pushed, and the last line is the gateway's CPU per message of that run
from its start until its last answer was pushed: what a message costs in all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import h11
from common import child_env, cpu_seconds, free_port, gateway_argv, serving

from chatgate.sim import wechat_xml
from chatgate.sim.wechat_api import WeChatAPISim
from chatgate.sim.wechat_crypto import sha1_signature

TOKEN = "bench-token"
APPID = "wxbench0000000001"
SECRET = "bench-secret"
ACCOUNT = "gh_bench"
USERS = 200

HELLO_SERVER = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

async def hello(request):
    await request.body()
    return PlainTextResponse("success")

app = Starlette(routes=[Route("/wechat", hello, methods=["POST"]), Route("/healthz", hello)])
config = uvicorn.Config(
    app, host="127.0.0.1", port=int(sys.argv[1]), access_log=False, log_level="warning"
)
uvicorn.Server(config).run()
"""


@dataclass(frozen=True)
class Request:
    target: str  # path and signed query
    body: bytes


@dataclass(frozen=True)
class Result:
    messages: int
    seconds: float
    latencies: list[float]
    failures: int
    server_cpu: float | None = None  # CPU seconds the server process used meanwhile
    cpu_at_start: float | None = None  # the server's CPU seconds when the run began

    @property
    def throughput(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_per_message_us(self) -> float | None:
        return None if self.server_cpu is None else 1e6 * self.server_cpu / self.messages

    @property
    def server_busy(self) -> float | None:
        """The share of one core the server used: below 1, the client set the pace."""
        return None if self.server_cpu is None else self.server_cpu / self.seconds

    def ms(self, percentile: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, round(percentile / 100 * (len(ordered) - 1)))]


def signed_messages(count: int, path: str = "/wechat") -> list[Request]:
    """Distinct text messages from `USERS` users, each signed as WeChat signs a try."""
    out = []
    for i in range(count):
        user = f"o_bench_{i % USERS:03d}"
        xml = wechat_xml.build(
            [
                ("ToUserName", ACCOUNT),
                ("FromUserName", user),
                ("CreateTime", str(int(time.time()))),
                ("MsgType", "text"),
                ("Content", f"第{i}个问题：推送模式下网关多快确认收到？"),
                ("MsgId", str(secrets.randbits(63))),
            ]
        )
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        query = {
            "signature": sha1_signature(TOKEN, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": user,
        }
        out.append(Request(f"{path}?{urllib.parse.urlencode(query)}", xml.encode()))
    return out


class Connection:
    """One keep-alive HTTP/1.1 connection: h11 (httpx's own parser) over asyncio streams.

    Written here because httpx's connection pool slows down sharply with hundreds of
    concurrent connections: the bench would measure the client instead of the servers.
    """

    def __init__(self, port: int) -> None:
        self._port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._h11 = h11.Connection(h11.CLIENT)

    async def post(self, request: Request) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection("127.0.0.1", self._port)
        reader, writer = self._streams
        headers = [
            ("Host", f"127.0.0.1:{self._port}"),
            ("Content-Type", "text/xml; charset=utf-8"),
            ("Content-Length", str(len(request.body))),
        ]
        out = [
            self._h11.send(h11.Request(method="POST", target=request.target, headers=headers)),
            self._h11.send(h11.Data(data=request.body)),
            self._h11.send(h11.EndOfMessage()),
        ]
        writer.write(b"".join(part or b"" for part in out))
        await writer.drain()
        status, chunks = 0, []
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                self._h11.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._h11.start_next_cycle()
                return status, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection")

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            with contextlib.suppress(OSError):
                await self._streams[1].wait_closed()
        self._streams = None


class Client:
    """`in_flight` connections to one server, and a count of what went wrong."""

    def __init__(self, port: int, in_flight: int) -> None:
        self._port = port
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(in_flight):
            self._idle.put_nowait(Connection(port))

    async def send(self, request: Request) -> bool:
        """Post one message on a free connection; whether it was acknowledged `success`."""
        connection = await self._idle.get()
        try:
            status, body = await connection.post(request)
            return status == 200 and body == b"success"
        except (OSError, h11.ProtocolError):
            await connection.close()
            connection = Connection(self._port)
            return False
        finally:
            self._idle.put_nowait(connection)

    async def close(self) -> None:
        while not self._idle.empty():
            await self._idle.get_nowait().close()


async def saturated(client: Client, requests: list[Request], in_flight: int) -> Result:
    """`in_flight` senders, each posting its next message as soon as the last is answered."""
    latencies: list[float] = []
    failures = 0
    queue = iter(requests)

    async def sender() -> None:
        nonlocal failures
        for request in queue:
            started = time.perf_counter()
            failures += not await client.send(request)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(in_flight)))
    return Result(len(requests), time.perf_counter() - started, latencies, failures)


async def paced(client: Client, requests: list[Request], rate: float) -> Result:
    """Messages sent on a fixed schedule, whatever the answers; latency from the schedule."""
    latencies: list[float] = []
    failures = 0
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(index: int, request: Request) -> None:
        nonlocal failures
        due = start + index / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        failures += not await client.send(request)
        latencies.append(loop.time() - due)

    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    return Result(len(requests), loop.time() - start, latencies, failures)


@dataclass(frozen=True)
class Load:
    messages: int
    in_flight: int
    rate: float
    paced_messages: int


async def measure(
    port: int, pid: int, load: Load, settle: Callable[[], Awaitable[object]] | None = None
) -> tuple[Result, Result]:
    """The paced run, then the saturated one; ``settle`` is awaited between the two (the
    gateway works off the answers of the warm-up and the paced run: the saturated run starts
    with nothing left over)."""
    client = Client(port, load.in_flight)
    try:
        await saturated(client, signed_messages(load.in_flight), load.in_flight)  # warm-up
        # Paced first: the saturated run leaves a backlog of answers to generate and push.
        steady = await paced(client, signed_messages(load.paced_messages), load.rate)
        if settle is not None:
            await settle()
        requests = signed_messages(load.messages)
        before = cpu_seconds(pid)
        busy = await saturated(client, requests, load.in_flight)
        after = cpu_seconds(pid)
    finally:
        await client.close()
    if before is not None and after is not None:
        busy = replace(busy, server_cpu=after - before, cpu_at_start=before)
    return busy, steady


@dataclass(frozen=True)
class Pushed:
    """How the answers' pushes kept up with the acknowledgements."""

    during: int  # pushed by the time the last acknowledgement came back
    total: int  # pushed in all, once the backlog was worked off (or the wait gave up)
    after: float  # seconds from the last acknowledgement to the last push
    # Gateway CPU per saturated-run message from the run's start until its last push: the
    # acknowledgement, the (fake) model's answer, the typing indicator and the push.
    cpu_per_answer_us: float | None = None


async def backlog_pushed(api: WeChatAPISim, expected: int, limit: float = 120.0) -> Pushed:
    """Wait until ``expected`` answers were pushed (one part each), or ``limit`` seconds."""
    during, acknowledged = len(api.delivered), time.time()  # the sim's clock is time.time
    # The sim records deliveries in a list; it has no event to wait on.
    while len(api.delivered) < expected and time.time() - acknowledged < limit:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    last = api.delivered[-1].at if api.delivered else acknowledged
    return Pushed(during, len(api.delivered), max(0.0, last - acknowledged))


async def run(
    store: str, load: Load
) -> tuple[tuple[Result, Result], tuple[Result, Result], Pushed]:
    env = child_env({})

    port = free_port()
    hello = [sys.executable, "-c", HELLO_SERVER, str(port)]
    async with serving(hello, env, port, stop_within=15) as pid:
        bare = await measure(port, pid, load)

    # Every user wrote just now, and may be sent any number of messages: no push is refused.
    api = WeChatAPISim(appid=APPID, secret=SECRET, per_message_cap=10**9)
    for i in range(USERS):
        api.user_wrote(f"o_bench_{i:03d}")
    with tempfile.TemporaryDirectory() as tmp:
        async with api.serve() as api_base:
            port = free_port()
            env |= {
                "CHATGATE_PORT": str(port),
                "CHATGATE_STORE": f"sqlite:///{Path(tmp) / 'bench.db'}"
                if store == "sqlite"
                else "memory://",
                "CHATGATE_LOG_LEVEL": "warning",
                "CHATGATE_LLM_PROVIDER": "fake",
                "CHATGATE_WECHAT_TOKEN": TOKEN,
                "CHATGATE_WECHAT_APPID": APPID,
                "CHATGATE_WECHAT_SECRET": SECRET,
                "CHATGATE_WECHAT_MODE": "push",
                "CHATGATE_WECHAT_API_BASE": api_base,
            }
            async with serving(gateway_argv(), env, port, stop_within=15) as pid:
                earlier = load.in_flight + load.paced_messages
                gateway = await measure(
                    port, pid, load, settle=lambda: backlog_pushed(api, earlier)
                )
                pushed = await backlog_pushed(api, earlier + load.messages)
                start, end = gateway[0].cpu_at_start, cpu_seconds(pid)
                if start is not None and end is not None:
                    per_answer = 1e6 * (end - start) / load.messages
                    pushed = replace(pushed, cpu_per_answer_us=per_answer)
    return bare, gateway, pushed


def cpu_line(result: Result) -> str:
    """``312 µs (busy 0.65)``: a server busy below 1 had the client set the pace."""
    per, busy = result.cpu_per_message_us, result.server_busy
    if per is None or busy is None:
        return "n/a"
    return f"{per:.0f} µs (busy {busy:.2f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--messages", type=int, default=2000, help="saturated: messages sent")
    parser.add_argument("--in-flight", type=int, default=200, help="saturated: outstanding")
    parser.add_argument("--rate", type=float, default=100.0, help="paced: messages a second")
    parser.add_argument("--paced-messages", type=int, default=400, help="paced: messages sent")
    args = parser.parse_args(argv)
    # The fake WeChat API's server is stopped with pushes still arriving: not worth a traceback.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    load = Load(args.messages, args.in_flight, args.rate, args.paced_messages)
    bare, gateway, pushed = asyncio.run(run(args.store, load))

    print(f"push-mode acknowledgement, loopback, uvicorn, gateway store: {args.store}")
    print(
        f"{'':22}{'saturated: ' + str(load.in_flight) + ' in flight':<34}paced: {load.rate:g} msg/s"
    )
    head = f"{'server':<22}{'msg/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'fail':>6}"
    print(f"{head}{'p50 ms':>12}{'p99 ms':>9}")
    for name, (busy, steady) in (("bare starlette", bare), ("chatgate push", gateway)):
        failures = busy.failures + steady.failures
        print(
            f"{name:<22}{busy.throughput:>8.0f}{busy.ms(50):>9.1f}{busy.ms(99):>9.1f}"
            f"{failures:>6}{steady.ms(50):>12.1f}{steady.ms(99):>9.1f}"
        )
    ratio = gateway[0].throughput / bare[0].throughput
    print(
        f"throughput ratio {ratio:.2f} (target >= 0.5); chatgate p99 {gateway[0].ms(99):.1f} ms "
        f"saturated, {gateway[1].ms(99):.1f} ms paced (target < 50)"
    )
    print(
        f"server CPU per message, saturated: bare {cpu_line(bare[0])}, "
        f"chatgate {cpu_line(gateway[0])}"
    )
    sent = load.in_flight + load.messages + load.paced_messages
    print(
        f"answers pushed to the fake WeChat API: {pushed.during} of {sent} by the last "
        f"acknowledgement, {pushed.total} in all, the last {pushed.after:.1f} s after it"
    )
    if pushed.cpu_per_answer_us is not None:
        print(
            f"chatgate CPU per saturated-run message, its answer pushed: "
            f"{pushed.cpu_per_answer_us:.0f} µs (acknowledgement, fake model, typing, push)"
        )
    return 0 if gateway[0].failures + gateway[1].failures == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
