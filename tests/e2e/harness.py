"""Run the real gateway over loopback — in this process, or as a separate OS process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from chatgate.app.asgi import build_app
from chatgate.app.wiring import Services
from chatgate.config import Settings, env_name, load_settings
from chatgate.sim.server import LoopbackServer

TOKEN = "e2e-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wxe2e0000000000001"
STARTUP_LIMIT = 30.0


def gateway_settings(llm_url: str, **overrides: Any) -> dict[str, Any]:
    """Settings for a test gateway talking to the fake LLM; ``overrides`` win."""
    values: dict[str, Any] = {
        "store": "memory://",
        "llm_provider": "openai",
        "llm_base_url": llm_url,
        "llm_model": "sim-llm",
        "llm_timeout": 60.0,
        "wechat_token": TOKEN,
        "wechat_appid": APPID,
        "log_level": "info",
    }
    values.update(overrides)
    return values


@dataclass
class Gateway:
    url: str
    settings: Settings
    services: Services

    @property
    def wechat_url(self) -> str:
        return self.url + self.settings.wechat_path


@asynccontextmanager
async def gateway_in_process(
    llm_url: str, *, clock: Callable[[], float] | None = None, **overrides: Any
) -> AsyncIterator[Gateway]:
    """The app on a loopback port; ``clock`` replaces the gateway's clock (a test moving time)."""
    settings = load_settings(environ={}, **gateway_settings(llm_url, **overrides))
    app = build_app(settings) if clock is None else build_app(settings, clock=clock)
    async with LoopbackServer(app) as server:
        yield Gateway(server.url, settings, app.state.services)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The command line of each role (chatgate.app.roles).
ROLE_COMMANDS = {"serve": ("serve",), "web": ("serve", "--no-worker"), "worker": ("worker",)}


class GatewayProcess:
    """``python -m chatgate serve`` in a child process, to restart or kill it for real.

    ``role`` "web" runs ``serve --no-worker`` and "worker" runs ``worker`` (both need Redis).
    """

    def __init__(self, llm_url: str, *, role: str = "serve", **overrides: Any) -> None:
        self.command = ROLE_COMMANDS[role]
        self.port = free_port()
        values = gateway_settings(llm_url, port=self.port, **overrides)
        self.env: dict[str, str] = {
            k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")
        }
        self.env.update({env_name(k): str(v) for k, v in values.items()})
        self.proc: asyncio.subprocess.Process | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.wechat_url = self.url + str(values.get("wechat_path", "/wechat"))

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chatgate",
            *self.command,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(STARTUP_LIMIT), httpx.AsyncClient() as client:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"gateway exited with {self.proc.returncode}")
                try:
                    if (await client.get(self.url + "/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        async with asyncio.timeout(STARTUP_LIMIT):
            code = await self.proc.wait()
        self.proc = None
        return code

    async def __aenter__(self) -> GatewayProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def user_messages(call_bodies: list[Mapping[str, Any]]) -> list[str]:
    """The last user message of each LLM call, for counting calls per question."""
    out = []
    for body in call_bodies:
        users = [m for m in body["messages"] if m["role"] == "user"]
        content = users[-1]["content"] if users else ""
        out.append(content if isinstance(content, str) else str(content))
    return out
