"""Wiring for WeChat push and hybrid modes: API client, shared token, pusher, typing, window."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx

from chatgate.channels.wechat_mp.api import API_CONCURRENCY, WeChatAPI, WeChatHTTP
from chatgate.channels.wechat_mp.inbound import CHANNEL
from chatgate.channels.wechat_mp.push import Pusher
from chatgate.channels.wechat_mp.push_window import HybridWindow, PushWindow
from chatgate.channels.wechat_mp.token import TokenManager
from chatgate.channels.wechat_mp.typing import TypingIndicator
from chatgate.channels.wechat_mp.window import PassiveWindow, WindowStrategy
from chatgate.config import Settings
from chatgate.core.delivery import Delivery, Surface, handed_off
from chatgate.http_client import HttpClient
from chatgate.store.base import AnswerRecord

if TYPE_CHECKING:
    from chatgate.app.wiring import Services

# Per request; the client retries transient failures a few times on top.
API_TIMEOUT = 10.0


def push_window(
    settings: Settings,
    services: Services,
    *,
    surface: Surface,
    delivery: Delivery,
    passive: PassiveWindow,
    clock: Callable[[], float] = time.time,
) -> WindowStrategy:
    """The push or hybrid window strategy, with what it needs registered on the services."""
    assert settings.wechat_secret is not None and settings.wechat_mode in ("push", "hybrid")
    limits = httpx.Limits(
        max_connections=API_CONCURRENCY, max_keepalive_connections=API_CONCURRENCY
    )
    client = HttpClient(timeout=API_TIMEOUT, limits=limits)
    services.on_shutdown.append(client.aclose)
    http = WeChatHTTP(client, settings.wechat_api_base, telemetry=services.telemetry)
    store = services.store
    tokens = TokenManager(
        store,
        http,
        appid=settings.wechat_appid,
        secret=settings.wechat_secret.get_secret_value(),
        source=settings.wechat_token_source,
        clock=clock,
        telemetry=services.telemetry,
    )
    api = WeChatAPI(http, tokens)
    pusher = Pusher(
        store,
        api,
        replace(surface, max_bytes=settings.wechat_push_max_bytes),
        services.texts,
        services.supervisor,
        max_messages=settings.wechat_push_max_messages,
        answer_ttl=settings.answer_ttl,
        typing=TypingIndicator(api, store, services.supervisor, clock=clock),
        clock=clock,
        telemetry=services.telemetry,
        precedence=services.precedence,
    )
    services.jobs.on_started(pusher.job_started)
    services.jobs.on_finished(pusher.job_finished)
    services.on_startup.append(pusher.resume)

    async def settle(record: AnswerRecord) -> None:
        if record.conversation.startswith(CHANNEL + ":") and handed_off(record):
            await pusher.push(record.id)

    # Redis workers acknowledge a job only once its push is done, and take up in their
    # maintenance round the pushes an instance that died had started.
    services.settle.append(settle)
    services.maintenance.append(pusher.resume)
    if settings.wechat_mode == "push":
        return PushWindow(services.dispatcher, passive, pusher)
    return HybridWindow(
        services.dispatcher,
        delivery,
        passive,
        pusher,
        deadline=settings.wechat_reply_deadline,
        reply_bytes=settings.wechat_passive_max_bytes,
        telemetry=services.telemetry,
    )
