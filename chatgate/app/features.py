"""Settings → the conversation features around the router: commands, AI sessions, keyword rules,
events, media, moderation and rate limits (each a small core module; this only assembles them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from chatgate.config import Settings, env_name
from chatgate.core.commands import Commands, HistoryLink
from chatgate.core.conversations import Conversations, provider_state_key
from chatgate.core.events import Events, Forget, MenuClicks
from chatgate.core.jobs import TextFilter
from chatgate.core.media import Media, VoiceAsText
from chatgate.core.middleware import ErrorGuard, Middleware
from chatgate.core.moderation import Blocklist, QuestionModeration, load_blocklist
from chatgate.core.ratelimit import Limit, RateLimit, RateLimiter
from chatgate.core.router import Router
from chatgate.core.rules import RuleBook, load_rules
from chatgate.core.sessions import SessionGate, Sessions
from chatgate.core.texts import Texts
from chatgate.errors import ConfigError
from chatgate.store.base import Store

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Features:
    """The routers and outer middleware of the features, and the answer text filter."""

    routers: list[Router] = field(default_factory=list)
    middleware: list[Middleware] = field(default_factory=list)  # the first is outermost
    answer_filter: Callable[[], TextFilter] | None = None

    def install(self, root: Router) -> None:
        """Put the middleware around ``root`` and include the routers (ahead of the default)."""
        for middleware in self.middleware:
            root.outer_middleware(middleware)
        for router in self.routers:
            root.include(router)


def _load(setting: str, path: Path | None, load: Callable[[Path], T], default: T) -> T:
    if path is None:
        return default
    try:
        return load(path)
    except ConfigError as exc:
        raise ConfigError(f"{env_name(setting)}: {exc}") from None


def build_features(
    settings: Settings,
    *,
    store: Store,
    texts: Texts,
    conversations: Conversations,
    history_link: HistoryLink | None = None,
    forget: Sequence[Forget] = (),
    clock: Callable[[], float] = time.time,
) -> Features:
    """The features as the settings ask for them; a bad rules or blocklist file raises
    ``ConfigError`` naming the setting.

    ``history_link`` answers /history; ``forget`` deletes other per-user values when a user
    unsubscribes (the conversation, session, counters and provider state are always deleted).
    """
    command_mode = settings.session_mode == "command"
    sessions = Sessions(store, ttl=settings.session_ttl, clock=clock)
    rules = _load("rules_file", settings.rules_file, load_rules, RuleBook())
    blocklist = _load("blocklist_file", settings.blocklist_file, load_blocklist, Blocklist(()))
    commands = Commands(
        conversations=conversations,
        texts=texts,
        prefix=settings.command_prefix,
        sessions=sessions if command_mode else None,
        history_link=history_link,
    )
    limiter = RateLimiter(store, [Limit(c, per) for c, per in settings.rate_limits], clock=clock)
    if settings.welcome_text is not None:
        welcome = settings.welcome_text
    else:
        welcome = commands.say(texts.welcome_command_mode if command_mode else texts.welcome)

    async def forget_provider_state(conversation: str) -> None:
        await store.kv_delete(provider_state_key(conversation))

    events = Events(
        store,
        welcome=welcome,
        forget=[sessions.forget, limiter.forget, forget_provider_state, *forget],
    )

    features = Features(
        routers=[
            events.router(),
            commands.router(),
            rules.router(),
            Media(texts, vision=settings.llm_vision).router(),
        ],
        middleware=[ErrorGuard(texts.internal_error), VoiceAsText(), MenuClicks(rules.menu)],
    )
    # Outermost first: the rate limit counts only what passes the session gate and moderation.
    if settings.rate_limits:
        features.middleware.append(RateLimit(limiter, texts))
    if command_mode:
        features.middleware.append(SessionGate(sessions, commands.say(texts.session_hint)))
    if blocklist:
        features.middleware.append(QuestionModeration(blocklist, texts.refused))
        features.answer_filter = blocklist.masker
    log.info(
        "features: session mode %s, %d keyword rules, %d menu keys, %d blocked terms, "
        "rate limit %s, vision %s",
        settings.session_mode,
        len(rules.rules),
        len(rules.menu),
        len(blocklist.terms),
        settings.rate_limit or "off",
        "on" if settings.llm_vision else "off",
    )
    return features
