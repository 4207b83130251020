"""The WeChat webhook: GET URL verification and POST messages, as Starlette routes.

Every request's signature is checked before anything else; bad input gets a 4xx and a log
line and never touches state. Encrypted requests (``encrypt_type=aes``) are decrypted and
their replies encrypted with the key that worked.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope

from chatgate.channels.body import PayloadTooLarge, read_asgi_body
from chatgate.channels.disconnect import ClientGone
from chatgate.channels.raw_http import HttpReply, RawEndpoint, query_params
from chatgate.channels.wechat_mp.crypto import WeChatCrypto
from chatgate.channels.wechat_mp.inbound import CHANNEL, to_inbound
from chatgate.channels.wechat_mp.signature import verify_signature
from chatgate.channels.wechat_mp.window import WindowStrategy
from chatgate.channels.wechat_mp.xml import parse_xml, text_reply
from chatgate.core.logcontext import log_scope
from chatgate.core.telemetry import NO_TELEMETRY, Telemetry
from chatgate.errors import BadRequest, SignatureError

log = logging.getLogger(__name__)

XML_MEDIA_TYPE = "application/xml"
_SUCCESS = HttpReply(b"success")


def _refusal(exc: BadRequest) -> str:
    """A bounded label for why a request was refused."""
    if isinstance(exc, SignatureError):
        return "signature"
    if isinstance(exc, PayloadTooLarge):
        return "too_large"
    return "malformed"


class WeChatEndpoint:
    """Verifies, decrypts and parses each try, asks the window strategy, builds the reply."""

    def __init__(
        self,
        *,
        token: str,
        window: WindowStrategy,
        crypto: WeChatCrypto | None = None,
        max_body: int = 64 * 1024,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._token = token
        self._window = window
        self._crypto = crypto
        self._max_body = max_body
        self._clock = clock
        self._telemetry = telemetry

    def routes(self, path: str) -> list[Route]:
        return [
            Route(path, self.verify_url, methods=["GET"]),
            # Plain ASGI: the message POST is the hot path (``channels.raw_http``).
            Route(path, RawEndpoint(self.receive), methods=["POST"]),
        ]

    def _check_signature(self, params: Mapping[str, str]) -> tuple[str, str]:
        timestamp = params.get("timestamp", "")
        nonce = params.get("nonce", "")
        signature = params.get("signature", "")
        if not (timestamp and nonce and signature):
            raise SignatureError("signature, timestamp or nonce missing")
        if not verify_signature(self._token, timestamp, nonce, signature):
            raise SignatureError("signature does not match")
        return timestamp, nonce

    async def verify_url(self, request: Request) -> Response:
        try:
            self._check_signature(request.query_params)
        except SignatureError as exc:
            log.warning("wechat GET refused: %s", exc)
            self._telemetry.webhook_refused(CHANNEL, "signature")
            return PlainTextResponse("forbidden", status_code=exc.status_code)
        return PlainTextResponse(request.query_params.get("echostr", ""))

    async def receive(self, scope: Scope, receive: Receive) -> HttpReply:
        arrived = self._clock()
        params = query_params(scope)
        try:
            timestamp, nonce = self._check_signature(params)
            body = await read_asgi_body(scope, receive, self._max_body)
            encrypted = params.get("encrypt_type", "raw") == "aes"
            reply_crypto: WeChatCrypto | None = None
            if encrypted:
                if self._crypto is None:
                    raise BadRequest("encrypted message but no EncodingAESKey is configured")
                decrypted = self._crypto.decrypt_message(
                    body,
                    msg_signature=params.get("msg_signature", ""),
                    timestamp=timestamp,
                    nonce=nonce,
                )
                body = decrypted.xml.encode("utf-8")
                reply_crypto = decrypted.crypto
                if decrypted.used_previous_key:
                    log.info("message decrypted with the previous EncodingAESKey")
            inbound = to_inbound(parse_xml(body, max_bytes=self._max_body))
        except BadRequest as exc:
            log.warning("wechat POST refused (%d): %s", exc.status_code, exc)
            self._telemetry.webhook_refused(CHANNEL, _refusal(exc))
            return HttpReply(type(exc).__name__.encode(), status=exc.status_code)

        with log_scope(
            channel=CHANNEL,
            message_id=inbound.dedup_key,
            conversation=str(inbound.conversation),
        ):
            text = await self._window.respond(inbound, arrived, ClientGone(receive))
        if not text:
            return _SUCCESS
        xml = text_reply(inbound.user, inbound.account, text, int(self._clock()))
        if reply_crypto is not None:
            xml = reply_crypto.encrypt_reply(
                xml, timestamp=str(int(self._clock())), nonce=secrets.token_hex(5)
            )
        return HttpReply(xml.encode("utf-8"), content_type=XML_MEDIA_TYPE)
