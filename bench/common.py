"""Shared pieces of the bench suite: result rows, percentiles, a gateway child process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
STARTUP_LIMIT = 30.0


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    bench: str
    figure: str
    value: str
    note: str = ""


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment for a gateway child: ours without CHATGATE_*, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(settings)
    return env


@asynccontextmanager
async def serving(
    argv: Sequence[str], env: Mapping[str, str], port: int, *, stop_within: float = 30.0
) -> AsyncIterator[int]:
    """A server in a child process, up once its /healthz answers on ``port``; stopped at exit
    (SIGTERM, then SIGKILL after ``stop_within`` seconds). Yields the child's pid."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=dict(env), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with asyncio.timeout(STARTUP_LIMIT), httpx.AsyncClient() as client:
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"{' '.join(argv[1:3])} exited with {proc.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(stop_within):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process ``pid`` has used so far; ``None`` without Linux's /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime: fields 14 and 15 of stat(5), counted from after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_argv() -> list[str]:
    return [sys.executable, "-m", "chatgate", "serve"]


@asynccontextmanager
async def gateway_process(settings: Mapping[str, str]) -> AsyncIterator[str]:
    """``python -m chatgate serve`` with ``settings`` (CHATGATE_* names); yields its URL."""
    port = free_port()
    # Jobs still running when a bench ends are throwaway: no need to drain them for long.
    env = child_env({"CHATGATE_SHUTDOWN_GRACE": "1", **settings, "CHATGATE_PORT": str(port)})
    async with serving(gateway_argv(), env, port):
        yield f"http://127.0.0.1:{port}"
