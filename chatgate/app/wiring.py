"""Settings → concrete store, provider, core services and channels: the only place that chooses."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.routing import BaseRoute

from chatgate.app.features import build_features
from chatgate.app.metrics import PrometheusTelemetry
from chatgate.app.roles import Role, job_queue, stream_worker
from chatgate.app.wechat_push import push_window
from chatgate.app.worker import StreamWorker
from chatgate.channels.dingtalk.channel import DingTalkChannel
from chatgate.channels.wechat_mp.crypto import WeChatCrypto
from chatgate.channels.wechat_mp.endpoint import WeChatEndpoint
from chatgate.channels.wechat_mp.window import PassiveWindow, WindowStrategy
from chatgate.config import Settings
from chatgate.core.cache import AnswerCache, namespace
from chatgate.core.conversations import Conversations
from chatgate.core.delivery import Delivery, Surface
from chatgate.core.dispatcher import Dispatcher
from chatgate.core.fairness import FairLimiter
from chatgate.core.jobs import AnswerJobs
from chatgate.core.links import Links
from chatgate.core.outbox import Outbox
from chatgate.core.plaintext import markdown_to_text
from chatgate.core.precedence import Precedence
from chatgate.core.queue import JobQueue, Settle
from chatgate.core.router import Router
from chatgate.core.routes import default_router
from chatgate.core.tasks import TaskSupervisor
from chatgate.core.telemetry import NO_TELEMETRY, MeteredProvider, Telemetry
from chatgate.core.texts import Texts
from chatgate.providers.base import Provider
from chatgate.providers.dify import DifyProvider
from chatgate.providers.fake import FakeProvider
from chatgate.providers.openai_compat import OpenAICompatProvider
from chatgate.store import open_store
from chatgate.store.base import Store
from chatgate.web.pages import Pages

log = logging.getLogger(__name__)


def make_provider(settings: Settings, http_client: httpx.AsyncClient | None = None) -> Provider:
    if settings.llm_provider == "fake":
        return FakeProvider()
    if settings.llm_provider == "dify":
        return DifyProvider(
            settings.llm_base_url,
            settings.llm_api_key.get_secret_value(),
            timeout=settings.llm_timeout,
            http_client=http_client,
            max_retries=settings.llm_retries,
        )
    return OpenAICompatProvider(
        settings.llm_base_url,
        settings.llm_api_key.get_secret_value(),
        settings.llm_model,
        timeout=settings.llm_timeout,
        http_client=http_client,
        max_retries=settings.llm_retries,
    )


def make_cache(settings: Settings, store: Store) -> AnswerCache | None:
    """The answer cache, or None when ``CHATGATE_CACHE_TTL`` is 0 (the default)."""
    if settings.cache_ttl <= 0:
        return None
    parts = [settings.llm_provider, settings.llm_base_url]
    if settings.llm_provider == "dify":
        # A Dify app is named by its key (prompt, model and knowledge live in the app); the
        # key only enters a SHA-256, never the store in the clear.
        parts.append(settings.llm_api_key.get_secret_value())
    else:
        parts += [settings.llm_model, settings.llm_system_prompt]
    return AnswerCache(store, ttl=settings.cache_ttl, scope=namespace(*parts))


def enabled_channels(settings: Settings) -> list[str]:
    """The channels these settings turn on, by the name they report under."""
    on = (("wechat_mp", settings.wechat_enabled), ("dingtalk", settings.dingtalk_enabled))
    return [name for name, enabled in on if enabled]


@dataclass
class Services:
    """Everything one gateway process runs, built from settings."""

    settings: Settings
    store: Store
    provider: Provider
    supervisor: TaskSupervisor
    jobs: AnswerJobs
    dispatcher: Dispatcher
    texts: Texts
    links: Links
    # What the gateway counts (Prometheus at /metrics unless a test passes its own).
    telemetry: Telemetry = NO_TELEMETRY
    routes: list[BaseRoute] = field(default_factory=list)
    # Run once the store is open, in order (e.g. resuming deliveries a crash interrupted).
    on_startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Long-running loops (a stream client, a sweeper): started after on_startup, cancelled
    # at shutdown before answer jobs are drained.
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    # Run at shutdown after jobs are drained, before the provider and store close.
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Channels that can speak first (to a user or a group, without a message to answer).
    outbox: Outbox = field(default_factory=Outbox)
    # What this process does (app.roles), and where the dispatcher sends answers to write.
    role: Role = Role.ALL
    queue: JobQueue | None = None
    # Redis deployments: the loop taking jobs from the stream, where this role runs jobs.
    worker: StreamWorker | None = None
    # Awaited by a stream worker once an answer finished, before acknowledging its job: a
    # channel's own delivery of it (a push).
    settle: list[Settle] = field(default_factory=list)
    # Run by stream workers every CHATGATE_JOB_CLAIM_AFTER seconds: take over what a dead
    # instance left that no job covers (a push it had started).
    maintenance: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Webhook acknowledgements before answer jobs and pushes, when they compete for the loop.
    precedence: Precedence = field(default_factory=Precedence)


def build_services(
    settings: Settings,
    *,
    store: Store | None = None,
    provider: Provider | None = None,
    router: Router | None = None,
    clock: Callable[[], float] = time.time,
    telemetry: Telemetry | None = None,
    role: Role = Role.ALL,
    precedence: Precedence | None = None,
) -> Services:
    store = store or open_store(settings.store, redis_prefix=settings.redis_prefix)
    if telemetry is None:
        telemetry = PrometheusTelemetry(enabled_channels(settings), tries=settings.wechat_tries)
    metered = MeteredProvider(provider or make_provider(settings), telemetry)
    provider = metered
    texts = Texts()
    supervisor = TaskSupervisor(settings.max_jobs)
    precedence = precedence or Precedence()
    conversations = Conversations(
        store,
        system_prompt=settings.llm_system_prompt,
        max_turns=settings.context_max_turns,
        max_tokens=settings.context_max_tokens,
    )
    links = Links(store, settings.public_url, ttl=settings.answer_ttl, clock=clock)
    if not links.enabled:
        log.warning("CHATGATE_PUBLIC_URL is not set: replies carry no page links")
    features = build_features(
        settings,
        store=store,
        texts=texts,
        conversations=conversations,
        history_link=links.history_link,
        forget=[links.revoke_history],
        clock=clock,
    )
    jobs = AnswerJobs(
        store,
        provider,
        conversations,
        supervisor,
        timeout=settings.llm_timeout,
        apology=settings.llm_apology,
        clock=clock,
        limiter=FairLimiter(settings.llm_concurrency),
        cache=make_cache(settings, store),
        text_filter=features.answer_filter,
        precedence=precedence,
    )
    root = Router("root")
    if router is not None:
        root.include(router)
    features.install(root)  # commands, sessions, rules, events, media, moderation, limits
    root.include(default_router(texts))
    queue = job_queue(settings, store, jobs, role)
    dispatcher = Dispatcher(
        store,
        root,
        queue,
        answer_ttl=settings.answer_ttl,
        clock=clock,
        telemetry=telemetry,
        precedence=precedence,
    )
    services = Services(settings, store, provider, supervisor, jobs, dispatcher, texts, links)
    services.precedence = precedence
    services.on_shutdown.append(precedence.aclose)
    services.role, services.queue = role, queue
    services.worker = stream_worker(settings, services, role)
    services.telemetry = telemetry
    telemetry.track_jobs(
        queued=lambda: jobs.active - metered.in_flight, running=lambda: metered.in_flight
    )
    # Starlette tries routes in order: the webhooks, hit by every message, come first.
    if settings.wechat_enabled:
        services.routes.extend(_wechat_routes(settings, services, clock))
    else:
        log.warning("CHATGATE_WECHAT_TOKEN is not set: the WeChat webhook is off")
    if settings.dingtalk_enabled:
        _install_dingtalk(settings, services, clock)
    services.routes.extend(Pages(store, links, clock=clock, telemetry=telemetry).routes())
    return services


def _wechat_routes(
    settings: Settings, services: Services, clock: Callable[[], float]
) -> list[BaseRoute]:
    assert settings.wechat_token is not None
    token = settings.wechat_token.get_secret_value()
    crypto = None
    if settings.wechat_aes_key is not None:
        crypto = WeChatCrypto(
            token, settings.wechat_aes_key.get_secret_value(), settings.wechat_appid
        )
    surface = Surface(
        max_bytes=settings.wechat_passive_max_bytes,
        render=markdown_to_text,
        link_for=services.links.answer_link,
    )
    delivery = Delivery(
        services.store,
        surface,
        services.texts,
        answer_ttl=settings.answer_ttl,
        clock=clock,
        telemetry=services.telemetry,
    )
    passive = PassiveWindow(
        services.dispatcher,
        delivery,
        deadline=settings.wechat_reply_deadline,
        tries=settings.wechat_tries,
        clock=clock,
        telemetry=services.telemetry,
    )
    window: WindowStrategy = passive
    if settings.wechat_mode in ("push", "hybrid"):
        window = push_window(
            settings, services, surface=surface, delivery=delivery, passive=passive, clock=clock
        )
    endpoint = WeChatEndpoint(
        token=token,
        window=window,
        crypto=crypto,
        max_body=settings.wechat_max_body_bytes,
        clock=clock,
        telemetry=services.telemetry,
    )
    return list(endpoint.routes(settings.wechat_path))


def _install_dingtalk(settings: Settings, services: Services, clock: Callable[[], float]) -> None:
    channel = DingTalkChannel(
        settings,
        store=services.store,
        dispatcher=services.dispatcher,
        supervisor=services.supervisor,
        texts=services.texts,
        clock=clock,
        telemetry=services.telemetry,
    )
    services.routes.extend(channel.routes())
    services.background.extend(channel.background())
    services.on_startup.append(channel.resume)
    services.on_shutdown.append(channel.aclose)
    services.outbox.register(channel.sender)
    log.info("dingtalk robot on, %s mode", settings.dingtalk_mode)
