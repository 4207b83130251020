"""Answer cache: a first-turn question asked again within the TTL is answered without the model."""

from __future__ import annotations

import hashlib
import unicodedata

from chatgate.store.base import Store

_KEY_PREFIX = "answer_cache:"


def normalise(question: str) -> str:
    """The form two questions share when they ask the same thing the same way.

    NFKC folds full-width letters, digits and punctuation into their usual forms (「ＡＢＣ？」
    is "ABC?"), case is folded, surrounding whitespace trimmed and inner runs collapsed.
    """
    folded = unicodedata.normalize("NFKC", question).casefold()
    # Normalise again after folding, as Unicode's caseless matching does: folding can undo NFKC.
    return " ".join(unicodedata.normalize("NFKC", folded).split())


def namespace(*parts: str) -> str:
    """One opaque name for everything that shapes an answer besides the question."""
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


class AnswerCache:
    """Successful answers to first-turn questions, kept ``ttl`` seconds in the store's kv.

    The store is shared by every instance, so a hit on one instance saves a model call on all.
    ``scope`` (see ``namespace``) must change whenever the answer would: the provider, the
    model or app, the system prompt. Only the caller knows whether a question is a first turn
    (no context the model would see) and whether its answer succeeded; it asks only then.
    """

    def __init__(self, store: Store, *, ttl: float, scope: str) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive; leave the cache out to turn it off")
        self._store = store
        self._ttl = ttl
        self._scope = scope

    def key(self, question: str) -> str:
        digest = hashlib.sha256(f"{self._scope}\n{normalise(question)}".encode()).hexdigest()
        return _KEY_PREFIX + digest

    async def get(self, question: str) -> str | None:
        """The cached answer to ``question``, or ``None``."""
        if not normalise(question):
            return None
        return await self._store.kv_get(self.key(question)) or None

    async def put(self, question: str, answer: str) -> None:
        if normalise(question) and answer.strip():
            await self._store.kv_set(self.key(question), answer, ttl=self._ttl)
