"""A fake WeChat platform that posts user messages to any gateway with WeChat's real timing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from chatgate.sim import wechat_xml
from chatgate.sim.wechat_crypto import MessageCrypto, sha1_signature
from chatgate.sim.wechat_reply import (
    MAX_TEXT_BYTES,
    SERVICE_UNAVAILABLE,
    BadReply,
    EncryptMode,
    read_reply,
)

__all__ = ["SERVICE_UNAVAILABLE", "Attempt", "EncryptMode", "Outcome", "SentRequest", "WeChatSim"]

log = logging.getLogger(__name__)

DEFAULT_APPID = "wx0123456789abcdef"


@dataclass(frozen=True)
class Attempt:
    """One try: the HTTP status and body, or no response (`error` says why)."""

    status: int | None
    body: str | None
    took: float
    error: str | None = None


Kind = Literal["reply", "nothing", "error"]


@dataclass(frozen=True)
class Outcome:
    """What the user saw after WeChat finished with one message.

    reply: `text` is shown (a text reply's Content, or a short description of other types);
    nothing: the gateway said `success` or sent an empty body;
    error: the user sees SERVICE_UNAVAILABLE; `reason` says why.
    """

    kind: Kind
    text: str | None
    tries: int
    elapsed: float
    raw: list[Attempt]
    reason: str = ""
    msg_id: str | None = None


@dataclass(frozen=True)
class SentRequest:
    """A request as it went on the wire; `xml` is the message before any encryption."""

    method: str
    url: str
    params: dict[str, str]
    body: str
    xml: str = ""


def _nonce() -> str:
    return str(secrets.randbelow(10**10))


class WeChatSim:
    """WeChat's webhook side: signs, encrypts, posts, waits `timeout` per try, retries.

    Without an `encrypt_mode`, an account with an `aes_key` is in safe mode, else plaintext.
    Pass `client` to share a connection pool; otherwise each message gets its own client.
    A try that gets any HTTP response ends the message: only silence makes WeChat retry here
    (whether WeChat also retries after a 5xx is unconfirmed).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        appid: str = DEFAULT_APPID,
        aes_key: str | None = None,
        account: str = "gh_sim",
        timeout: float = 5.0,
        tries: int = 3,
        encrypt_mode: EncryptMode | None = None,
        client: httpx.AsyncClient | None = None,
        max_text_bytes: int | None = MAX_TEXT_BYTES,
        on_message: Callable[[str, str], None] | None = None,
    ) -> None:
        mode: EncryptMode = encrypt_mode or ("plain" if aes_key is None else "safe")
        if mode != "plain" and aes_key is None:
            raise ValueError(f"{mode} mode needs an aes_key")
        if tries < 1:
            raise ValueError("tries must be at least 1")
        self.url = url
        self.token = token
        self.appid = appid
        self.account = account
        self.timeout = timeout
        self.tries = tries
        self.mode = mode
        self.client = client
        self.max_text_bytes = max_text_bytes
        self.sent: list[SentRequest] = []
        # Told (user, MsgType) as each message leaves the user, before its first try: a fake
        # WeChat API uses it to open the user's customer-service window.
        self.on_message = on_message
        self._crypto = None if aes_key is None else MessageCrypto(token, aes_key, appid)

    async def send_text(self, user: str, text: str) -> Outcome:
        return await self.send_message(user, "text", {"Content": text})

    async def send_event(self, user: str, event: str, event_key: str | None = None) -> Outcome:
        fields = {"Event": event} if event_key is None else {"Event": event, "EventKey": event_key}
        return await self.send_message(user, "event", fields)

    async def send_message(self, user: str, msg_type: str, fields: dict[str, str]) -> Outcome:
        """Any MsgType with its own fields, e.g. voice with Recognition, image with PicUrl."""
        header = [
            ("ToUserName", self.account),
            ("FromUserName", user),
            ("CreateTime", str(int(time.time()))),
            ("MsgType", msg_type),
        ]
        # Events carry no MsgId; every message gets a fresh 64-bit one.
        msg_id = None if msg_type == "event" else str(secrets.randbits(63))
        tail = [] if msg_id is None else [("MsgId", msg_id)]
        if self.on_message is not None:
            self.on_message(user, msg_type)
        return await self._deliver(user, [*header, *fields.items(), *tail], msg_id)

    async def verify_url(self) -> bool:
        """The GET echostr handshake WeChat does when the server URL is configured."""
        echostr = str(secrets.randbits(63))
        params = {**self._signed_query(), "echostr": echostr}
        self.sent.append(SentRequest("GET", self.url, params, ""))
        async with self._client_scope() as client:
            try:
                response = await client.get(self.url, params=params, timeout=self.timeout)
            except httpx.HTTPError as exc:
                log.info("URL verification failed: %s", exc)
                return False
        return response.status_code == 200 and response.text == echostr

    def _signed_query(self) -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), _nonce()
        return {
            "signature": sha1_signature(self.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
        }

    def _seal(self, fields: list[tuple[str, str]]) -> tuple[str, str, str | None]:
        """The message XML, the body every try posts, and its Encrypt value when encrypted."""
        xml = wechat_xml.build(fields)
        if self._crypto is None or self.mode == "plain":
            return xml, xml, None
        encrypted = self._crypto.encrypt(xml)
        if self.mode == "safe":
            body = wechat_xml.build([("ToUserName", self.account), ("Encrypt", encrypted)])
        else:  # compat: the plaintext fields and the ciphertext side by side
            body = wechat_xml.build([*fields, ("Encrypt", encrypted)])
        return xml, body, encrypted

    def _try_query(self, user: str, encrypted: str | None) -> dict[str, str]:
        query = {**self._signed_query(), "openid": user}
        if encrypted is not None:
            query["encrypt_type"] = "aes"
            query["msg_signature"] = sha1_signature(
                self.token, query["timestamp"], query["nonce"], encrypted
            )
        return query

    def _client_scope(self) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
        if self.client is not None:
            return contextlib.nullcontext(self.client)
        return httpx.AsyncClient()

    async def _deliver(
        self, user: str, fields: list[tuple[str, str]], msg_id: str | None
    ) -> Outcome:
        xml, body, encrypted = self._seal(fields)
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempts: list[Attempt] = []
        async with self._client_scope() as client:
            for _ in range(self.tries):
                # Same body every try; fresh timestamp, nonce and signatures.
                params = self._try_query(user, encrypted)
                self.sent.append(SentRequest("POST", self.url, params, body, xml))
                attempt, content = await self._post(client, params, body)
                attempts.append(attempt)
                if content is not None:
                    kind, text, reason = self._judge(user, attempt, content)
                    break
            else:
                kind, text = "error", SERVICE_UNAVAILABLE
                reason = f"no answer within {self.timeout} s on any of {self.tries} tries"
        return Outcome(
            kind=kind,
            text=text,
            tries=len(attempts),
            elapsed=loop.time() - started,
            raw=attempts,
            reason=reason,
            msg_id=msg_id,
        )

    async def _post(
        self, client: httpx.AsyncClient, params: dict[str, str], body: str
    ) -> tuple[Attempt, bytes | None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            # One deadline over connect, send and the whole body: httpx's own timeouts are per
            # phase, so a gateway trickling bytes would outlive them, but not WeChat's 5 s.
            async with asyncio.timeout(self.timeout):
                response = await client.post(
                    self.url,
                    params=params,
                    content=body.encode(),
                    headers={"Content-Type": "text/xml; charset=utf-8"},
                    timeout=self.timeout,
                )
        except (TimeoutError, httpx.TimeoutException):
            # WeChat hangs up; whatever the gateway writes later is lost.
            log.debug("try timed out after %.2f s", loop.time() - started)
            return Attempt(None, None, loop.time() - started, "timeout"), None
        except httpx.TransportError as exc:
            return Attempt(None, None, loop.time() - started, f"{type(exc).__name__}: {exc}"), None
        took = loop.time() - started
        return Attempt(response.status_code, response.text, took), response.content

    def _judge(self, user: str, attempt: Attempt, content: bytes) -> tuple[Kind, str | None, str]:
        """(kind, what the user sees, why it failed) for a try that got a response."""
        if attempt.status is None or not 200 <= attempt.status < 300:
            return "error", SERVICE_UNAVAILABLE, f"HTTP {attempt.status}"
        try:
            text = read_reply(
                content,
                user=user,
                account=self.account,
                mode=self.mode,
                crypto=self._crypto,
                max_text_bytes=self.max_text_bytes,
            )
        except BadReply as exc:
            return "error", SERVICE_UNAVAILABLE, str(exc)
        if text is None:
            return "nothing", None, ""
        return "reply", text, ""
