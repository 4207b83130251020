"""Links to the answer and history pages: building them, and minting and resolving history tokens.

Both pages are reached by capability URLs: whoever holds the link may read the page, and
nobody can guess one. An answer's token is its record's ``page_token`` (made by the
dispatcher). A history token is minted here: 128 random bits bound to one conversation in the
store's keyed values, expiring with the answer TTL. Asking again for a conversation's history
link gives the same token while it still has at least half its life left, so a user who asks
twice gets one link, and a link handed out never dies moments later. The conversation keeps
the list of its live tokens, so all of them can be revoked at once.

Links are absolute URLs under ``CHATGATE_PUBLIC_URL``; without it every method that builds a
link returns ``None`` and replies simply carry no link.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable

from chatgate.store.base import AnswerKind, AnswerRecord, Store

ANSWER_PREFIX = "/a/"
HISTORY_PREFIX = "/h/"

# History tokens (``new_token``) are 16 random bytes as 22 URL-safe base64 characters, and
# so were answer tokens before they carried the time: 24 bytes, 32 characters now.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{22}|[A-Za-z0-9_-]{32}")


def new_token() -> str:
    """A fresh capability token: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def token_shaped(token: str) -> bool:
    """Whether ``token`` could be one we minted (checked before any store lookup)."""
    return _TOKEN_RE.fullmatch(token) is not None


def _token_key(token: str) -> str:
    return f"history-token:{token}"


def _conversation_key(conversation: str) -> str:
    return f"history-link:{conversation}"


class Links:
    """Builds page links from the public base URL, and keeps history tokens in the store."""

    def __init__(
        self,
        store: Store,
        public_url: str | None,
        *,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._base = public_url.rstrip("/") if public_url else None
        self._ttl = ttl
        self._clock = clock

    @property
    def enabled(self) -> bool:
        """Whether links can be built at all (a public URL is configured)."""
        return self._base is not None

    def answer_link(self, record: AnswerRecord) -> str | None:
        """The answer page of ``record``, or ``None`` without a public URL.

        A 「1」 fetch has no page of its own: its text is a part of another answer.
        """
        if self._base is None or record.kind is AnswerKind.FETCH or not record.page_token:
            return None
        return f"{self._base}{ANSWER_PREFIX}{record.page_token}"

    async def history_link(self, conversation: str) -> str | None:
        """The history page of ``conversation``, or ``None`` without a public URL."""
        if self._base is None:
            return None
        return f"{self._base}{HISTORY_PREFIX}{await self.history_token(conversation)}"

    async def history_token(self, conversation: str) -> str:
        """The conversation's current history token, minting a new one when needed."""
        now = self._clock()
        live = [(t, until) for t, until in await self._issued(conversation) if until > now]
        if live and live[-1][1] >= now + self._ttl / 2:
            return live[-1][0]
        token = new_token()
        live.append((token, now + self._ttl))
        await self._store.kv_set(_token_key(token), conversation, ttl=self._ttl)
        await self._store.kv_set(_conversation_key(conversation), json.dumps(live), ttl=self._ttl)
        return token

    async def resolve_history(self, token: str) -> str | None:
        """The conversation a history token is bound to, unless unknown or expired."""
        if not token_shaped(token):
            return None
        return await self._store.kv_get(_token_key(token))

    async def revoke_history(self, conversation: str) -> None:
        """Invalidate every history link of the conversation now (the user left, say)."""
        for token, _ in await self._issued(conversation):
            await self._store.kv_delete(_token_key(token))
        await self._store.kv_delete(_conversation_key(conversation))

    async def _issued(self, conversation: str) -> list[tuple[str, float]]:
        """The conversation's history tokens and their expiry times, oldest first."""
        raw = await self._store.kv_get(_conversation_key(conversation))
        try:
            loaded = json.loads(raw) if raw else []
            return [(str(token), float(until)) for token, until in loaded]
        except (ValueError, TypeError):
            return []
