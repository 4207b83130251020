"""Prometheus metrics: ``Telemetry`` counted on a per-app registry, served at ``GET /metrics``.

Each app gets its own ``CollectorRegistry`` rather than prometheus-client's global one, so
tests (and a process embedding several gateways) can build many apps side by side, each
counting only its own traffic. Every metric is listed in the README.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chatgate import __version__
from chatgate.core.telemetry import (
    FETCH,
    LOST_EXPIRED_UNFINISHED,
    LOST_GIVEN_UP,
    LOST_RECORD_MISSING,
    LOST_VANISHED,
    PAGE,
    PUSH,
    inline_path,
    try_label,
)

_LLM_SECONDS = (0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)
_FIRST_CHUNK_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 10.0, 20.0, 60.0)
_LOST_REASONS = (LOST_EXPIRED_UNFINISHED, LOST_RECORD_MISSING, LOST_VANISHED, LOST_GIVEN_UP)

_Labelled = TypeVar("_Labelled", Counter, Histogram)


class PrometheusTelemetry:
    """Counts ``Telemetry`` events as Prometheus metrics on its own registry.

    ``channels`` are the enabled channels: their loss counters are created at zero, so an
    alert on ``chatgate_answers_lost_total > 0`` has a series to watch from the start.
    """

    def __init__(self, channels: Iterable[str] = (), *, tries: int = 3) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Each metric's child per label values, found once: ``labels`` takes a lock and checks
        # every value on each call, and some of these count every acknowledgement.
        self._children: dict[tuple[int, tuple[str, ...]], Counter | Histogram] = {}
        self._messages = Counter(
            "chatgate_messages_received",
            "User messages accepted (first tries), by channel and kind.",
            ["channel", "kind"],
            registry=r,
        )
        self._tries = Counter(
            "chatgate_tries",
            "Webhook tries of user messages, by channel and try number (2 and up are retries).",
            ["channel", "attempt"],
            registry=r,
        )
        self._delivered = Counter(
            "chatgate_deliveries",
            "Model answers (or parts of them) that reached the user, by channel and path: "
            "inline_try_N, push, fetch (reply 1) or page.",
            ["channel", "path"],
            registry=r,
        )
        self._deferred = Counter(
            "chatgate_answers_deferred",
            "Model answers not ready on their message's last try (the user got the placeholder).",
            ["channel"],
            registry=r,
        )
        self._lost = Counter(
            "chatgate_answers_lost",
            "Accepted messages whose answer can no longer reach the user. Must stay 0.",
            ["channel", "reason"],
            registry=r,
        )
        self._llm_calls = Counter(
            "chatgate_llm_calls", "Model calls made, by provider.", ["provider"], registry=r
        )
        self._llm_errors = Counter(
            "chatgate_llm_errors",
            "Model calls that failed, by provider and code (HTTP status, timeout, …).",
            ["provider", "code"],
            registry=r,
        )
        self._llm_seconds = Histogram(
            "chatgate_llm_call_seconds",
            "Duration of model calls, retries included, by provider.",
            ["provider"],
            buckets=_LLM_SECONDS,
            registry=r,
        )
        self._llm_first = Histogram(
            "chatgate_llm_first_chunk_seconds",
            "Time from a model call's start to its first text, by provider.",
            ["provider"],
            buckets=_FIRST_CHUNK_SECONDS,
            registry=r,
        )
        self._api_errors = Counter(
            "chatgate_platform_api_errors",
            "Platform API calls that failed, by platform and code (errcode or HTTP status).",
            ["platform", "code"],
            registry=r,
        )
        self._token_refreshes = Counter(
            "chatgate_token_refreshes",
            "Platform access tokens fetched anew, by platform.",
            ["platform"],
            registry=r,
        )
        self._refused = Counter(
            "chatgate_webhook_refused",
            "Webhook requests refused, by channel and reason.",
            ["channel", "reason"],
            registry=r,
        )
        self._queued = Gauge(
            "chatgate_jobs_queued",
            "Answer jobs waiting (for their conversation's turn or a model slot).",
            registry=r,
        )
        self._running = Gauge(
            "chatgate_jobs_running", "Model calls streaming right now.", registry=r
        )
        self.draining = Gauge(
            "chatgate_draining", "1 while the process is shutting down, else 0.", registry=r
        )
        Info("chatgate_build", "The running chatgate version.", registry=r).info(
            {"version": __version__}
        )
        ProcessCollector(registry=r)
        self._queued.set_function(lambda: 0)
        self._running.set_function(lambda: 0)
        for channel in channels:
            self._deferred.labels(channel)
            for reason in _LOST_REASONS:
                self._lost.labels(channel, reason)
            for path in (*(inline_path(n) for n in range(1, tries + 1)), PUSH, FETCH, PAGE):
                self._delivered.labels(channel, path)

    def _labelled(self, metric: _Labelled, *values: str) -> _Labelled:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return cast(_Labelled, child)

    # -- Telemetry ------------------------------------------------------------------------
    def message_received(self, channel: str, kind: str) -> None:
        self._labelled(self._messages, channel, kind).inc()

    def try_seen(self, channel: str, attempt: int) -> None:
        self._labelled(self._tries, channel, try_label(attempt)).inc()

    def delivered(self, channel: str, path: str) -> None:
        self._labelled(self._delivered, channel, path).inc()

    def deferred(self, channel: str) -> None:
        self._labelled(self._deferred, channel).inc()

    def answer_lost(self, channel: str, reason: str) -> None:
        self._labelled(self._lost, channel, reason).inc()

    def llm_call(self, provider: str, seconds: float, error: str | None) -> None:
        self._labelled(self._llm_calls, provider).inc()
        self._labelled(self._llm_seconds, provider).observe(seconds)
        if error is not None:
            self._labelled(self._llm_errors, provider, error).inc()

    def llm_first_chunk(self, provider: str, seconds: float) -> None:
        self._labelled(self._llm_first, provider).observe(seconds)

    def platform_api_error(self, platform: str, code: str) -> None:
        self._labelled(self._api_errors, platform, code).inc()

    def token_refresh(self, platform: str) -> None:
        self._labelled(self._token_refreshes, platform).inc()

    def webhook_refused(self, channel: str, reason: str) -> None:
        self._labelled(self._refused, channel, reason).inc()

    def track_jobs(self, queued: Callable[[], int], running: Callable[[], int]) -> None:
        self._queued.set_function(lambda: max(0, queued()))
        self._running.set_function(lambda: max(0, running()))

    # -- exposition -----------------------------------------------------------------------
    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for (Prometheus text by default)."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


def metrics_route(telemetry: PrometheusTelemetry, token: str | None) -> Route:
    """``GET /metrics``; with ``token``, only for ``Authorization: Bearer <token>``."""
    expected = f"Bearer {token}".encode() if token else None

    async def metrics(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return PlainTextResponse(
                    "unauthorized", status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
        body, content_type = telemetry.render(request.headers.get("accept", ""))
        return Response(body, headers={"Content-Type": content_type})

    return Route("/metrics", metrics, methods=["GET"])
