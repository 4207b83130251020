"""Webhook acknowledgement in push mode, against a bare Starlette hello-world served the same way.

    python bench/ack.py [--store sqlite|memory] [--messages 2000] [--rounds 3]
                        [--in-flight 200] [--rate 100]

Both servers run side by side as child processes under uvicorn on loopback; the client in this
process sends signed WeChat text messages and times each request until its `success`. The
gateway runs for real: push mode, the offline fake model, and a fake WeChat API (served by this
process) that receives the pushes, so answer jobs and pushes compete with the acknowledgements
as they would in production.

Two loads per server: paced (`--rate` messages a second, open loop: the latency of one
acknowledgement at a steady load), then saturated (`--in-flight` requests always outstanding:
throughput, and latency that is mostly queueing, about in-flight / throughput). The saturated
runs alternate, bare server then gateway, `--rounds` times: a machine shared with other work
changes speed from one minute to the next, and each round's ratio divides two runs made seconds
apart; the ratio printed is the median of the rounds'. Target: at least 0.5 of the bare
server's throughput, p99 under 50 ms.

Acknowledgements go before background work (``core.precedence``), so during a saturated run
most of its answers wait; a line says how many were pushed while it lasted and how long the
backlog took after it (the fake model streams each answer for a fraction of a second, at most
``CHATGATE_LLM_CONCURRENCY`` at once). Each round starts once the gateway's earlier answers are
all pushed, and the last line is the gateway's CPU per message from the start of a saturated
run until its last answer was pushed: what a message costs in all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
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

    async def open(self) -> None:
        """Start over on a new socket."""
        await self.close()
        self._streams = await asyncio.open_connection("127.0.0.1", self._port)
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

    async def reopen(self) -> None:
        """Put every connection on a new socket (while none is in use). Between two runs of
        one server the other one runs, and uvicorn drops keep-alive connections idle for 5 s:
        a run must not begin by finding that out, one failed request per connection."""
        connections = [self._idle.get_nowait() for _ in range(self._idle.qsize())]
        await asyncio.gather(*(connection.open() for connection in connections))
        for connection in connections:
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
    messages: int  # per saturated run
    in_flight: int
    rate: float
    paced_messages: int
    rounds: int = 3  # saturated runs per server, the two servers alternating


async def timed(client: Client, pid: int, requests: list[Request], in_flight: int) -> Result:
    """A saturated run on fresh connections, with the CPU the server process ``pid`` used
    meanwhile."""
    await client.reopen()
    before = cpu_seconds(pid)
    result = await saturated(client, requests, in_flight)
    after = cpu_seconds(pid)
    if before is None or after is None:
        return result
    return replace(result, server_cpu=after - before, cpu_at_start=before)


async def warmed_and_paced(client: Client, load: Load) -> tuple[Result, Result]:
    """The warm-up (one message per connection), then the paced run."""
    warm_up = await saturated(client, signed_messages(load.in_flight), load.in_flight)
    return warm_up, await paced(client, signed_messages(load.paced_messages), load.rate)


def acknowledged(*results: Result) -> int:
    """How many messages the server acknowledged: each has an answer to push."""
    return sum(result.messages - result.failures for result in results)


async def pushed_by_now(api: WeChatAPISim, expected: int, limit: float = 120.0) -> float:
    """Wait until ``expected`` answers were pushed in all (one part each), or ``limit``
    seconds; how long after the call the last of them was pushed."""
    called = time.time()  # the sim's clock is time.time
    # The sim records deliveries in a list; it has no event to wait on.
    while len(api.delivered) < expected and time.time() - called < limit:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    last = api.delivered[-1].at if api.delivered else called
    return max(0.0, last - called)


@dataclass(frozen=True)
class Round:
    """One saturated run of each server, back to back, and how the gateway's answers went."""

    bare: Result
    gateway: Result
    pushed_during: int  # the run's own answers pushed before its last acknowledgement
    pushed_after: float  # seconds from the run's last acknowledgement to its last push
    # Gateway CPU seconds from the start of the run until its last answer was pushed.
    gateway_cpu_all: float | None

    @property
    def ratio(self) -> float:
        return self.gateway.throughput / self.bare.throughput


@dataclass(frozen=True)
class Report:
    load: Load
    bare_paced: Result
    gateway_paced: Result
    rounds: list[Round]
    pushed: int  # answers pushed in all (warm-up, paced and saturated runs)

    @property
    def ratio(self) -> float:
        """The median of the rounds' ratios: each divides runs made seconds apart."""
        return float(statistics.median(r.ratio for r in self.rounds))

    def pooled(self, server: str) -> Result:
        """One server's saturated runs as one: messages, time and CPU summed, latencies pooled."""
        runs = [getattr(r, server) for r in self.rounds]
        cpus = [run.server_cpu for run in runs]
        return Result(
            sum(run.messages for run in runs),
            sum(run.seconds for run in runs),
            [latency for run in runs for latency in run.latencies],
            sum(run.failures for run in runs),
            None if None in cpus else sum(c for c in cpus if c is not None),
        )

    @property
    def round_ratios(self) -> str:
        """Each round's ratio, in order: ``0.43, 0.47, 0.40``."""
        return ", ".join(f"{r.ratio:.2f}" for r in self.rounds)

    @property
    def pushed_during(self) -> int:
        """The saturated runs' own answers pushed while their run lasted, all rounds."""
        return sum(r.pushed_during for r in self.rounds)

    @property
    def pushed_after(self) -> float:
        """The longest any round's answers took after its last acknowledgement."""
        return max(r.pushed_after for r in self.rounds)

    def median_throughput(self, server: str) -> float:
        return float(statistics.median(getattr(r, server).throughput for r in self.rounds))

    @property
    def cpu_per_answer_us(self) -> float | None:
        """Gateway CPU per saturated-run message, its answer pushed (ack, model, typing, push)."""
        cpus = [r.gateway_cpu_all for r in self.rounds]
        if None in cpus:
            return None
        messages = sum(r.gateway.messages for r in self.rounds)
        return 1e6 * sum(c for c in cpus if c is not None) / messages


def gateway_settings(store: str, path: Path, api_base: str, port: int) -> dict[str, str]:
    return {
        "CHATGATE_PORT": str(port),
        "CHATGATE_STORE": f"sqlite:///{path}" if store == "sqlite" else "memory://",
        "CHATGATE_LOG_LEVEL": "warning",
        "CHATGATE_LLM_PROVIDER": "fake",
        "CHATGATE_WECHAT_TOKEN": TOKEN,
        "CHATGATE_WECHAT_APPID": APPID,
        "CHATGATE_WECHAT_SECRET": SECRET,
        "CHATGATE_WECHAT_MODE": "push",
        "CHATGATE_WECHAT_API_BASE": api_base,
    }


async def run(
    store: str, load: Load, progress: Callable[[str], None] = lambda line: None
) -> Report:
    """Both servers up side by side; each round runs the bare server, then the gateway, once
    the gateway's earlier answers are all pushed (no answer job of a round runs in the next)."""
    env = child_env({})
    # Every user wrote just now, and may be sent any number of messages: no push is refused.
    api = WeChatAPISim(appid=APPID, secret=SECRET, per_message_cap=10**9)
    for i in range(USERS):
        api.user_wrote(f"o_bench_{i:03d}")
    bare_port, gateway_port = free_port(), free_port()
    hello = [sys.executable, "-c", HELLO_SERVER, str(bare_port)]
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            serving(hello, env, bare_port, stop_within=15) as bare_pid,
            api.serve() as api_base,
        ):
            settings = gateway_settings(store, Path(tmp) / "bench.db", api_base, gateway_port)
            async with serving(gateway_argv(), env | settings, gateway_port, stop_within=15) as pid:
                bare = Client(bare_port, load.in_flight)
                gateway = Client(gateway_port, load.in_flight)
                try:
                    _, bare_paced = await warmed_and_paced(bare, load)
                    gateway_warm_up, gateway_paced = await warmed_and_paced(gateway, load)
                    answered = acknowledged(gateway_warm_up, gateway_paced)  # answers so far
                    await pushed_by_now(api, answered)
                    rounds = []
                    for number in range(1, load.rounds + 1):
                        requests = signed_messages(load.messages)
                        bare_run = await timed(bare, bare_pid, requests, load.in_flight)
                        gateway_run = await timed(gateway, pid, requests, load.in_flight)
                        during = len(api.delivered) - answered
                        answered += acknowledged(gateway_run)
                        after = await pushed_by_now(api, answered)
                        end, start = cpu_seconds(pid), gateway_run.cpu_at_start
                        cpu_all = None if end is None or start is None else end - start
                        rounds.append(Round(bare_run, gateway_run, during, after, cpu_all))
                        progress(
                            f"round {number}/{load.rounds}: bare {bare_run.throughput:.0f}, "
                            f"chatgate {gateway_run.throughput:.0f} msg/s, "
                            f"ratio {rounds[-1].ratio:.2f}"
                        )
                finally:
                    await bare.close()
                    await gateway.close()
    return Report(load, bare_paced, gateway_paced, rounds, len(api.delivered))


def cpu_line(result: Result) -> str:
    """``312 µs (busy 0.65)``: a server busy below 1 had the client set the pace."""
    per, busy = result.cpu_per_message_us, result.server_busy
    if per is None or busy is None:
        return "n/a"
    return f"{per:.0f} µs (busy {busy:.2f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--messages", type=int, default=2000, help="saturated: messages a run")
    parser.add_argument("--rounds", type=int, default=3, help="saturated: runs of each server")
    parser.add_argument("--in-flight", type=int, default=200, help="saturated: outstanding")
    parser.add_argument("--rate", type=float, default=100.0, help="paced: messages a second")
    parser.add_argument("--paced-messages", type=int, default=400, help="paced: messages sent")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    # The fake WeChat API's server is stopped with pushes still arriving: not worth a traceback.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    load = Load(args.messages, args.in_flight, args.rate, args.paced_messages, args.rounds)
    report = asyncio.run(run(args.store, load, progress=lambda line: print(line, file=sys.stderr)))
    for line in report_lines(report, args.store):
        print(line)
    gateway = report.pooled("gateway")
    return 0 if gateway.failures + report.gateway_paced.failures == 0 else 1


def report_lines(report: Report, store: str) -> list[str]:
    load = report.load
    lines = [
        f"push-mode acknowledgement, loopback, uvicorn, gateway store: {store}; "
        f"{load.rounds} alternating saturated runs of {load.messages} messages per server",
        f"{'':22}{'saturated: ' + str(load.in_flight) + ' in flight':<34}"
        f"paced: {load.rate:g} msg/s",
        f"{'server':<22}{'msg/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'fail':>6}"
        f"{'p50 ms':>12}{'p99 ms':>9}",
    ]
    for name, server, steady in (
        ("bare starlette", "bare", report.bare_paced),
        ("chatgate push", "gateway", report.gateway_paced),
    ):
        busy = report.pooled(server)
        lines.append(
            f"{name:<22}{report.median_throughput(server):>8.0f}{busy.ms(50):>9.1f}"
            f"{busy.ms(99):>9.1f}{busy.failures + steady.failures:>6}"
            f"{steady.ms(50):>12.1f}{steady.ms(99):>9.1f}"
        )
    gateway = report.pooled("gateway")
    lines += [
        "msg/s: the median run; latencies: all runs' together",
        f"throughput ratio {report.ratio:.2f}, the median of the rounds' "
        f"({report.round_ratios}; target >= 0.5); "
        f"chatgate p99 {gateway.ms(99):.1f} ms saturated, {report.gateway_paced.ms(99):.1f} ms "
        f"paced (target < 50)",
        f"server CPU per message, saturated: bare {cpu_line(report.pooled('bare'))}, "
        f"chatgate {cpu_line(gateway)}",
        f"answers pushed to the fake WeChat API while their run lasted: "
        f"{report.pushed_during} of {gateway.messages}; "
        f"{report.pushed} pushed in all, the last of a run at most "
        f"{report.pushed_after:.1f} s after its last acknowledgement",
    ]
    if report.cpu_per_answer_us is not None:
        lines.append(
            f"chatgate CPU per saturated-run message, its answer pushed: "
            f"{report.cpu_per_answer_us:.0f} µs (acknowledgement, fake model, typing, push)"
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
