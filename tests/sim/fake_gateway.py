"""A tiny scriptable gateway for driving WeChatSim over real loopback HTTP."""

from __future__ import annotations

import hashlib
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate.sim.server import LoopbackServer

TOKEN = "simtoken"
USER = "o_user_1"
ACCOUNT = "gh_sim"


@dataclass
class Received:
    """One request the test gateway saw (counting from try 1)."""

    attempt: int
    params: dict[str, str]
    body: bytes


Handler = Callable[[Received], Awaitable[Response]]


@dataclass
class Gateway:
    handler: Handler
    received: list[Received] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        seen = Received(len(self.received) + 1, dict(request.query_params), await request.body())
        self.received.append(seen)
        return await self.handler(seen)


@asynccontextmanager
async def gateway(handler: Handler) -> AsyncIterator[tuple[str, Gateway]]:
    """Serve `handler` at /wechat; yields (url, gateway)."""
    gw = Gateway(handler)
    app = Starlette(routes=[Route("/wechat", gw.endpoint, methods=["GET", "POST"])])
    # No grace: handlers still sleeping past WeChat's timeout are cancelled at once.
    async with LoopbackServer(app, grace=0) as server:
        yield f"{server.url}/wechat", gw


def sha1_of(*parts: str) -> str:
    # Written out here rather than imported, so the tests check the simulator independently.
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def fields_of(xml: bytes | str) -> dict[str, str]:
    return {child.tag: child.text or "" for child in ET.fromstring(xml)}


def text_reply(content: str, *, to: str = USER, sender: str = ACCOUNT) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
        f"<FromUserName><![CDATA[{sender}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content></xml>"
    )


def xml_response(xml: str) -> Response:
    return Response(xml, media_type="application/xml")
