"""Webhook throughput on Redis with 1 and 3 gateway instances on this machine.

    python bench/scale.py [--messages 1500] [--in-flight 48] [--max-seconds 90]

Starts a throwaway ``redis-server`` on a free loopback port (or uses ``--redis-url``, under a
key prefix of its own), then for each setup starts the gateways as child processes
(``chatgate serve``: webhook and worker in each; Redis store; the offline fake model, whose
answers stream in a few 20 ms chunks; passive mode) and posts signed WeChat text messages,
``--in-flight`` at a time, each client connection bound to one instance in turn as a load
balancer would. One instance on SQLite (jobs run in process, no Redis) is measured first for
reference. Every message is new, so each request runs the whole path: claim, answer
record, job on the Redis stream, a worker (on any instance) streams the answer, the webhook
(woken through pub/sub) replies it inline. A run stops after ``--messages`` or
``--max-seconds``. Prints a table: throughput, latency, failures and model calls per message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import h11
import httpx
import redis
from ack import Connection, Request
from common import child_env, free_port, gateway_argv, serving
from prometheus_client.parser import text_string_to_metric_families

from chatgate.sim import wechat_xml
from chatgate.sim.wechat_crypto import sha1_signature

TOKEN = "bench-token"
APPID = "wxbench0000000001"
ACCOUNT = "gh_bench"
USERS = 500
LLM_CALLS = "chatgate_llm_calls_total"


@dataclass(frozen=True)
class Result:
    setup: str
    sent: int
    seconds: float
    latencies: list[float]
    failures: int
    model_calls: int

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies) or [0.0]
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def signed_message(i: int, tag: str) -> tuple[str, bytes]:
    """The query string and body of one new WeChat text message, signed."""
    user = f"o_{tag}_{i % USERS:03d}"
    xml = wechat_xml.build(
        [
            ("ToUserName", ACCOUNT),
            ("FromUserName", user),
            ("CreateTime", str(int(time.time()))),
            ("MsgType", "text"),
            ("Content", f"第{i}个问题：多个实例一起处理有多快？"),
            ("MsgId", str(secrets.randbits(63))),
        ]
    )
    timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
    params = {
        "signature": sha1_signature(TOKEN, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": user,
    }
    return urllib.parse.urlencode(params), xml.encode()


async def load(ports: list[int], count: int, in_flight: int, limit: float, tag: str) -> Result:
    """Post ``count`` messages (or for ``limit`` seconds), connections spread over ``ports``."""
    latencies: list[float] = []
    failures = 0
    sent = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit

    async def client(port: int) -> None:
        nonlocal failures, sent
        connection = Connection(port)
        try:
            while sent < count and loop.time() < deadline:
                query, body = signed_message(sent, tag)
                sent += 1
                started = time.perf_counter()
                try:
                    status, reply = await connection.post(Request(f"/wechat?{query}", body))
                    ok = status == 200 and b"<Content>" in reply
                except (OSError, h11.ProtocolError):
                    ok = False
                    await connection.close()
                    connection = Connection(port)
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(ports[i % len(ports)]) for i in range(in_flight)))
    return Result("", sent, time.perf_counter() - started, latencies, failures, 0)


def gateway(env: dict[str, str], port: int) -> AbstractAsyncContextManager[int]:
    return serving(gateway_argv(), {**env, "CHATGATE_PORT": str(port)}, port, stop_within=20)


async def model_calls(ports: list[int]) -> int:
    """Model calls made so far by the instances on ``ports``, from their /metrics."""
    calls = 0.0
    async with httpx.AsyncClient() as client:
        for port in ports:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            for family in text_string_to_metric_families(text):
                calls += sum(
                    s.value for s in family.samples if s.name == "chatgate_llm_calls_total"
                )
    return round(calls)


async def run_setup(
    setup: str, instances: int, store: str, base_env: dict[str, str], args: argparse.Namespace
) -> Result:
    prefix = f"bench-{secrets.token_hex(4)}:"
    env = {**base_env, "CHATGATE_STORE": store, "CHATGATE_REDIS_PREFIX": prefix}
    ports = [free_port() for _ in range(instances)]
    async with contextlib.AsyncExitStack() as stack:
        for port in ports:
            await stack.enter_async_context(gateway(env, port))
        await load(ports, args.in_flight * 2, args.in_flight, 30.0, "warm")  # connections, JIT
        before = await model_calls(ports)
        result = await load(ports, args.messages, args.in_flight, args.max_seconds, "bench")
        calls = await model_calls(ports) - before
    if store.startswith("redis"):
        with redis.Redis.from_url(store) as client:
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.delete(key)
    return Result(setup, result.sent, result.seconds, result.latencies, result.failures, calls)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed; pass --redis-url")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", tmp]
        command += ["--save", "", "--appendonly", "no"]  # a throwaway: nothing on disk
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(100):
                with contextlib.suppress(redis.ConnectionError):
                    with redis.Redis.from_url(url) as client:
                        client.ping()
                    break
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait()


async def run(url: str, args: argparse.Namespace) -> list[Result]:
    base_env = child_env(
        {
            "CHATGATE_LOG_LEVEL": "warning",
            "CHATGATE_LLM_PROVIDER": "fake",
            "CHATGATE_WECHAT_TOKEN": TOKEN,
            "CHATGATE_WECHAT_APPID": APPID,
        }
    )
    results = []
    if args.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = f"sqlite:///{tmp}/bench.db"
            results.append(await run_setup("1, SQLite", 1, sqlite, base_env, args))
    for n in args.instances:
        results.append(await run_setup(f"{n}, Redis", n, url, base_env, args))
    return results


def table(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"{args.in_flight} requests in flight, at most {args.messages} messages or "
        f"{args.max_seconds:g} s per setup; {os.cpu_count()} CPUs; fake model, passive mode",
        f"{'instances':<12} {'replied':>8} {'seconds':>8} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'failed':>7} {'model calls/msg':>16}",
    ]
    for r in results:
        per = r.model_calls / len(r.latencies) if r.latencies else 0.0
        lines.append(
            f"{r.setup:<12} {len(r.latencies):>8} {r.seconds:>8.1f} {r.throughput:>8.1f}"
            f" {r.percentile(50) * 1000:>8.0f} {r.percentile(99) * 1000:>8.0f}"
            f" {r.failures:>7} {per:>16.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1500, help="messages per setup")
    parser.add_argument("--in-flight", type=int, default=48, help="concurrent requests")
    parser.add_argument("--max-seconds", type=float, default=90.0, help="time limit per setup")
    parser.add_argument(
        "--instances", type=int, nargs="+", default=[1, 3], help="instance counts to measure"
    )
    parser.add_argument("--redis-url", help="a Redis to use instead of starting one")
    parser.add_argument(
        "--sqlite",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first measure one instance on SQLite (jobs in process), for reference",
    )
    args = parser.parse_args(argv)
    if args.redis_url:
        results = asyncio.run(run(args.redis_url, args))
    else:
        with redis_server() as url:
            results = asyncio.run(run(url, args))
    print(table(results, args))
    return 0 if all(r.failures == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
