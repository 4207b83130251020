"""HTTP callback mode: ``POST /dingtalk``, signed with ``timestamp``/``sign`` headers.

The signature and the timestamp's skew are checked before anything else (403 otherwise); the
body is read up to a size limit (413) and must be a robot message (400). The message is
accepted and the request answered 200 at once: the answer goes out later through the
sessionWebhook or the OpenAPI (what an app robot's HTTP response carries is unconfirmed).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatgate.channels.body import PayloadTooLarge, read_body
from chatgate.channels.dingtalk.inbound import CHANNEL
from chatgate.channels.dingtalk.receiver import Receiver
from chatgate.channels.dingtalk.sign import verify_callback
from chatgate.core.telemetry import NO_TELEMETRY, Telemetry
from chatgate.errors import BadRequest, SignatureError

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
# Shows nothing in the chat, should DingTalk relay the response body (custom robots do).
EMPTY_REPLY = {"msgtype": "empty"}


class DingTalkEndpoint:
    """Verifies, parses and accepts each callback."""

    def __init__(
        self,
        *,
        secret: str,
        receiver: Receiver,
        max_body: int = MAX_BODY,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._secret = secret
        self._receiver = receiver
        self._max_body = max_body
        self._clock = clock
        self._telemetry = telemetry

    def routes(self, path: str) -> list[Route]:
        return [Route(path, self.receive, methods=["POST"])]

    async def receive(self, request: Request) -> Response:
        try:
            verify_callback(
                request.headers.get("timestamp", ""),
                request.headers.get("sign", ""),
                self._secret,
                now=self._clock(),
            )
            body = await read_body(request, self._max_body)
            try:
                data = json.loads(body)
            except ValueError:
                raise BadRequest("the body is not JSON") from None
            if not isinstance(data, dict):
                raise BadRequest("the body is not a JSON object")
            outcome = await self._receiver.receive(data)
        except BadRequest as exc:
            log.warning("dingtalk POST refused (%d): %s", exc.status_code, exc)
            reason = (
                "signature"
                if isinstance(exc, SignatureError)
                else "too_large"
                if isinstance(exc, PayloadTooLarge)
                else "malformed"
            )
            self._telemetry.webhook_refused(CHANNEL, reason)
            return JSONResponse({"error": type(exc).__name__}, status_code=exc.status_code)
        log.debug("dingtalk callback %s", outcome)
        return JSONResponse(EMPTY_REPLY)
