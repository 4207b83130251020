"""The DingTalk channel assembled from settings: what the app serves, runs and registers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import httpx
from starlette.routing import BaseRoute

from chatgate.channels.dingtalk.active import DingTalkActiveSender
from chatgate.channels.dingtalk.cards import CardStreamer
from chatgate.channels.dingtalk.delivery import DingTalkDelivery
from chatgate.channels.dingtalk.endpoint import DingTalkEndpoint
from chatgate.channels.dingtalk.openapi import OpenApi
from chatgate.channels.dingtalk.receiver import Receiver
from chatgate.channels.dingtalk.webhook import Replier
from chatgate.config import Settings
from chatgate.core.delivery import Delivery, Surface
from chatgate.core.dispatcher import Dispatcher
from chatgate.core.tasks import TaskSupervisor
from chatgate.core.telemetry import NO_TELEMETRY, Telemetry
from chatgate.core.texts import Texts
from chatgate.http_client import HttpClient
from chatgate.store.base import Store

if TYPE_CHECKING:
    from chatgate.channels.dingtalk.stream import StreamClient

log = logging.getLogger(__name__)

# One markdown message's text. JSON escaping can double it in the worst case, and the group
# send's msgParam takes 15 000 bytes (the webhook ~20 000), so this always fits both.
MARKDOWN_MAX_BYTES = 6000
HTTP_TIMEOUT = 10.0


class DingTalkChannel:
    """Routes (HTTP mode) or a stream loop (Stream mode), resumption, and an active sender."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        dispatcher: Dispatcher,
        supervisor: TaskSupervisor,
        texts: Texts,
        clock: Callable[[], float] = time.time,
        http: httpx.AsyncClient | None = None,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        assert settings.dingtalk_client_secret is not None, "dingtalk_enabled is checked first"
        self.settings = settings
        self._secret = settings.dingtalk_client_secret.get_secret_value()
        self.http = http or HttpClient(timeout=HTTP_TIMEOUT)
        self._owns_http = http is None
        robot_code = settings.dingtalk_robot_code or settings.dingtalk_client_id
        self.openapi = OpenApi(
            self.http,
            store,
            base=settings.dingtalk_api_base,
            client_id=settings.dingtalk_client_id,
            client_secret=self._secret,
            telemetry=telemetry,
        )
        surface = Surface(max_bytes=MARKDOWN_MAX_BYTES)  # markdown passes through as is
        cards = None
        if settings.dingtalk_card_template:
            cards = CardStreamer(
                self.openapi,
                store,
                template=settings.dingtalk_card_template,
                key=settings.dingtalk_card_key,
                interval=settings.dingtalk_stream_interval,
            )
        self.deliveries = DingTalkDelivery(
            store,
            supervisor,
            Delivery(
                store,
                surface,
                texts,
                answer_ttl=settings.answer_ttl,
                clock=clock,
                telemetry=telemetry,
            ),
            Replier(self.http, self.openapi, clock=clock, telemetry=telemetry),
            texts,
            cards=cards,
            fetch_wait=settings.llm_timeout,
            answer_ttl=settings.answer_ttl,
            clock=clock,
            telemetry=telemetry,
        )
        self.receiver = Receiver(
            dispatcher,
            self.deliveries,
            robot_code=robot_code,
            max_age=settings.dingtalk_max_age,
            clock=clock,
        )
        self.sender = DingTalkActiveSender(self.openapi, surface)
        self.stream: StreamClient | None = None
        if settings.dingtalk_mode == "stream":
            # Imported here: the SDK's frame models pull in requests and aiohttp, which only
            # Stream mode needs.
            from chatgate.channels.dingtalk.stream import StreamClient

            self.stream = StreamClient(
                self.http,
                api_base=settings.dingtalk_api_base,
                client_id=settings.dingtalk_client_id,
                client_secret=self._secret,
                handle=self.receiver.receive,
            )
        self._clock = clock
        self._telemetry = telemetry

    def routes(self) -> list[BaseRoute]:
        if self.settings.dingtalk_mode != "http":
            return []
        endpoint = DingTalkEndpoint(
            secret=self._secret,
            receiver=self.receiver,
            clock=self._clock,
            telemetry=self._telemetry,
        )
        return list(endpoint.routes(self.settings.dingtalk_path))

    def background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [self.stream.run] if self.stream is not None else []

    async def resume(self) -> None:
        await self.deliveries.resume()

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()
