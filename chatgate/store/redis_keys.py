"""Every Redis key, channel and stream name chatgate uses, all under one prefix.

Nothing else spells a key: the store, the job stream and the Lua scripts (which get their
key prefixes from here as arguments) all ask this module. Keys by kind:

- temporary, with a Redis expiry: message claims, answers and their text and page tokens, the
  claims naming an answer, a conversation's answer index, values set with a ttl, locks (a
  worker's lease on a conversation is a lock it renews);
- kept until deleted: conversation turns and context resets, the answer sequence, the indexes
  of unfinished answers and of expiries (trimmed by ``purge_expired``), the job stream.
"""

from __future__ import annotations

DEFAULT_PREFIX = "chatgate:"


class RedisKeys:
    """Names under ``prefix`` (``CHATGATE_REDIS_PREFIX``)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        # Singletons.
        self.answer_seq = prefix + "answer-seq"  # INCR: orders answers
        self.unfinished = prefix + "unfinished"  # zset answer id → seq: LLM answers not finished
        self.expiries = prefix + "expiries"  # zset key → expires_at: what purge_expired visits
        self.jobs = prefix + "jobs"  # stream of answer jobs
        self.job_group = "workers"  # the consumer group on ``jobs`` (a name, not a key)
        self.feed_alive = prefix + "feed"  # a channel always subscribed, keeping pub/sub open

    # -- message claims -------------------------------------------------------------------
    def claim(self, dedup_key: str) -> str:
        """Hash ``a`` (answer id), ``x`` (expires at)."""
        return f"{self.prefix}claim:{dedup_key}"

    def answer_claims(self, answer_id: str) -> str:
        """Set of claim keys naming the answer, to delete them with its conversation."""
        return f"{self.prefix}answer-claims:{answer_id}"

    # -- answers --------------------------------------------------------------------------
    def answer(self, answer_id: str) -> str:
        """Hash of the record's fields; ``meta`` entries as fields ``m:<key>``."""
        return f"{self.prefix}answer:{answer_id}"

    def answer_text(self, answer_id: str) -> str:
        """String: the answer's text, grown with APPEND while it streams."""
        return f"{self.prefix}answer-text:{answer_id}"

    def page_token(self, token: str) -> str:
        """String: the answer id a page token opens."""
        return f"{self.prefix}page:{token}"

    def conversation_answers(self, conversation: str) -> str:
        """Zset answer id → seq: a conversation's answers."""
        return f"{self.prefix}conv-answers:{conversation}"

    # -- conversations --------------------------------------------------------------------
    def turns(self, conversation: str) -> str:
        """List of turns (JSON), oldest first."""
        return f"{self.prefix}turns:{conversation}"

    def context_start(self, conversation: str) -> str:
        """String: index in ``turns`` where the context starts (after the last reset)."""
        return f"{self.prefix}context:{conversation}"

    # -- values, locks, leases ------------------------------------------------------------
    def value(self, key: str) -> str:
        """Hash ``v`` (value), ``x`` (expires at, absent for no expiry)."""
        return f"{self.prefix}kv:{key}"

    def lock(self, name: str) -> str:
        """Hash ``o`` (owner token), ``x`` (expires at); leases too (``RedisStore.lease``)."""
        return f"{self.prefix}lock:{name}"

    # -- live feed (pub/sub channels) -----------------------------------------------------
    def answer_channel(self, answer_id: str) -> str:
        """Published to on every change of the answer."""
        return f"{self.prefix}changed:{answer_id}"

    def lock_channel(self, name: str) -> str:
        """Published to when the lock is released."""
        return f"{self.prefix}released:{name}"

    def lua_prefixes(self) -> list[str]:
        """Prefixes the cleanup scripts build keys from ids with (``redis_scripts._CLEANUP``)."""
        return [
            self.answer(""),
            self.answer_text(""),
            self.page_token(""),
            self.answer_claims(""),
            self.conversation_answers(""),
            self.answer_channel(""),
        ]
