"""DingTalk's OpenAPI: the app access token, robot messages to users and groups, AI cards.

The token lives in the store's kv, so every process of a deployment shares one and DingTalk's
token endpoint is asked only when it is about to expire; a store lock makes one process
refresh it while the others wait and then read the new one. A call refused with
``InvalidAuthentication`` drops the cached token and is tried once more with a fresh one.
Throttling (403 ``QpsLimit…``), 5xx and connection errors are retried after a pause, as
DingTalk's docs advise (sleep 1 s); anything else is a ``DingTalkApiError`` at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from chatgate.channels.dingtalk.inbound import CHANNEL, ReplyAddress
from chatgate.core.outbox import SendFailed
from chatgate.core.telemetry import NO_TELEMETRY, Telemetry
from chatgate.store.base import Store

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-acs-dingtalk-access-token"
# Refresh this long before DingTalk's expiry, as its SDK does.
TOKEN_MARGIN = 300.0
RETRIES = 3
RETRY_PAUSE = 1.0


class DingTalkApiError(SendFailed):
    """An OpenAPI call failed; ``code`` is DingTalk's error code when it gave one."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str = "", retryable: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable


def _error(response: httpx.Response) -> DingTalkApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = str(body.get("code", "")) if isinstance(body, dict) else ""
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    status = response.status_code
    retryable = status >= 500 or status == 429 or "QpsLimit" in code
    where = f"{response.request.method} {response.request.url.path}"
    return DingTalkApiError(
        f"{where} → {status} {code} {message}".strip(),
        status=status,
        code=code,
        retryable=retryable,
    )


def _code(error: DingTalkApiError) -> str:
    """DingTalk's error code, else the HTTP status, else ``no_answer`` (network)."""
    return error.code or (str(error.status) if error.status is not None else "no_answer")


def token_key(client_id: str) -> str:
    return f"dingtalk:token:{client_id}"


class OpenApi:
    """The calls chatgate makes, over one shared ``httpx.AsyncClient``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        store: Store,
        *,
        base: str,
        client_id: str,
        client_secret: str,
        retries: int = RETRIES,
        pause: float = RETRY_PAUSE,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._http = http
        self._telemetry = telemetry
        self._store = store
        self._base = base.rstrip("/")
        self._client_id = client_id
        self._secret = client_secret
        self._retries = retries
        self._pause = pause
        self._clock = clock
        self._sleep = sleep

    # -- token --------------------------------------------------------------------------
    async def token(self) -> str:
        """A valid app access token, from the store or freshly fetched."""
        key = token_key(self._client_id)
        cached = await self._store.kv_get(key)
        if cached:
            return cached
        async with self._store.lock(key + ":refresh", ttl=30.0):
            cached = await self._store.kv_get(key)  # another process may have just refreshed
            if cached:
                return cached
            token, lifetime = await self._fetch_token()
            self._telemetry.token_refresh(CHANNEL)
            await self._store.kv_set(key, token, ttl=max(60.0, lifetime - TOKEN_MARGIN))
            return token

    async def _fetch_token(self) -> tuple[str, float]:
        body = {"appKey": self._client_id, "appSecret": self._secret}
        response = await self._send("POST", "/v1.0/oauth2/accessToken", body, token=None)
        data = response.json()
        token, lifetime = data.get("accessToken"), data.get("expireIn")
        if not isinstance(token, str) or not isinstance(lifetime, int | float):
            raise DingTalkApiError("token response without accessToken/expireIn")
        log.info("dingtalk access token refreshed (valid %ss)", lifetime)
        return token, float(lifetime)

    async def _forget_token(self, token: str) -> None:
        key = token_key(self._client_id)
        if await self._store.kv_get(key) == token:
            await self._store.kv_delete(key)

    # -- calls --------------------------------------------------------------------------
    async def call(self, method: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One authenticated call; its JSON result. Retries as the module docstring says."""
        for fresh in (False, True):
            token = await self.token()
            try:
                response = await self._send(method, path, body, token=token)
            except DingTalkApiError as exc:
                if not fresh and (exc.status == 401 or exc.code == "InvalidAuthentication"):
                    log.info("dingtalk token refused; fetching a new one")
                    await self._forget_token(token)
                    continue
                raise
            try:
                data = response.json()
            except ValueError:
                return {}
            return data if isinstance(data, dict) else {}
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, method: str, path: str, body: Mapping[str, Any], *, token: str | None
    ) -> httpx.Response:
        headers = {TOKEN_HEADER: token} if token else {}
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    method, self._base + path, json=body, headers=headers
                )
            except httpx.HTTPError as exc:
                error = DingTalkApiError(f"{method} {path}: {exc!r}", retryable=True)
            else:
                if response.is_success:
                    return response
                error = _error(response)
            self._telemetry.platform_api_error(CHANNEL, _code(error))
            if not error.retryable or attempt > self._retries:
                raise error
            log.warning("%s; retrying in %.1fs", error, self._pause * attempt)
            await self._sleep(self._pause * attempt)

    # -- robot messages -----------------------------------------------------------------
    @staticmethod
    def _markdown(title: str, text: str) -> dict[str, str]:
        param = json.dumps({"title": title, "text": text}, ensure_ascii=False)
        return {"msgKey": "sampleMarkdown", "msgParam": param}

    async def send_to_users(
        self, robot_code: str, user_ids: Sequence[str], title: str, text: str
    ) -> None:
        """A markdown message in each user's single chat with the robot (``batchSend``)."""
        body = {"robotCode": robot_code, "userIds": list(user_ids), **self._markdown(title, text)}
        result = await self.call("POST", "/v1.0/robot/oToMessages/batchSend", body)
        refused = [
            *result.get("invalidStaffIdList", []),
            *result.get("flowControlledStaffIdList", []),
        ]
        if refused:
            raise DingTalkApiError(f"batchSend refused users {refused}", code="invalidStaffId")

    async def send_to_group(self, robot_code: str, group: str, title: str, text: str) -> None:
        """A markdown message in a group (``groupMessages/send`` by openConversationId)."""
        body = {"robotCode": robot_code, "openConversationId": group, **self._markdown(title, text)}
        await self.call("POST", "/v1.0/robot/groupMessages/send", body)

    # -- AI cards -------------------------------------------------------------------------
    async def create_card(
        self, template: str, out_track_id: str, address: ReplyAddress, params: Mapping[str, str]
    ) -> None:
        """Create an AI card and deliver it into the message's chat (``createAndDeliver``)."""
        body: dict[str, Any] = {
            "cardTemplateId": template,
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": dict(params)},
            "callbackType": "STREAM",
            "userIdType": 1,
        }
        if address.group:
            body["openSpaceId"] = f"dtv1.card//IM_GROUP.{address.conversation_id}"
            body["imGroupOpenSpaceModel"] = {"supportForward": True}
            body["imGroupOpenDeliverModel"] = {"robotCode": address.robot_code}
        else:
            body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{address.staff_id}"
            body["imRobotOpenSpaceModel"] = {"supportForward": True}
            body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT"}
        await self.call("POST", "/v1.0/card/instances/createAndDeliver", body)

    async def stream_card(
        self,
        out_track_id: str,
        key: str,
        content: str,
        *,
        finalize: bool = False,
        error: bool = False,
    ) -> None:
        """Replace the card's streaming variable with ``content`` (always a whole-text update)."""
        body = {
            "outTrackId": out_track_id,
            "guid": uuid.uuid4().hex,  # one per call: a retried call is not applied twice
            "key": key,
            "content": content,
            "isFull": True,
            "isFinalize": finalize,
            "isError": error,
        }
        await self.call("PUT", "/v1.0/card/streaming", body)
