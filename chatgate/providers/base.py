"""The ``Provider`` protocol: stream an answer's text for a list of chat messages.

The core never sees HTTP: it hands a ``ChatRequest`` to ``Provider.stream`` and gets text
chunks. Failures are ``ProviderError`` (``retryable`` for 429, 5xx, connection errors) or
``ProviderTimeout``; nothing else escapes a provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image the model should look at (vision models only)."""

    url: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    images: tuple[ImagePart, ...] = ()


@dataclass(slots=True)
class ChatRequest:
    """What to answer, for whom.

    ``state`` is the provider's own per-conversation memory (Dify's ``conversation_id``, say):
    the job loads it from the store before the call and saves it after, so a provider that
    changes it in place keeps it across turns and restarts.
    """

    messages: Sequence[ChatMessage]
    user: str
    conversation: str
    request_id: str = ""
    state: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        """Yield the answer's text in chunks as the model produces them."""

    async def aclose(self) -> None:
        """Release connections."""
