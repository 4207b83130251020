"""Conversation context: the recent turns the model sees, within a turn and token budget."""

from __future__ import annotations

from chatgate.core.tokens import message_tokens, trim_context
from chatgate.providers.base import ChatMessage, ImagePart
from chatgate.store.base import Store, Turn


def provider_state_key(conversation: str) -> str:
    """Where a provider's own memory of the conversation lives (Dify's conversation id)."""
    return f"provider_state:{conversation}"


class Conversations:
    """Builds the model's input from stored turns and records finished exchanges."""

    def __init__(
        self, store: Store, *, system_prompt: str, max_turns: int, max_tokens: int
    ) -> None:
        self._store = store
        self._system_prompt = system_prompt
        self._max_turns = max_turns
        self._max_tokens = max_tokens

    async def messages_for(
        self, conversation: str, question: str, images: tuple[str, ...] = ()
    ) -> list[ChatMessage]:
        """System prompt, then the turns that fit the budgets, then the new question."""
        head: list[ChatMessage] = []
        if self._system_prompt:
            head.append(ChatMessage("system", self._system_prompt))
        fixed = message_tokens("user", question) + sum(
            message_tokens(m.role, m.content) for m in head
        )
        history: list[Turn] = []
        if self._max_turns > 0:
            stored = await self._store.recent_turns(conversation, self._max_turns)
            history = trim_context(
                stored,
                max_turns=self._max_turns,
                max_tokens=max(0, self._max_tokens - fixed),
                content=lambda t: t.content,
                role=lambda t: t.role,
            )
        turns = [
            ChatMessage("assistant" if t.role == "assistant" else "user", t.content)
            for t in history
        ]
        question_message = ChatMessage("user", question, tuple(ImagePart(url) for url in images))
        return [*head, *turns, question_message]

    async def record(
        self, conversation: str, question: str, answer: str, *, answer_id: str, at: float
    ) -> None:
        await self._store.append_turns(
            conversation,
            [
                Turn("user", question, at, answer_id),
                Turn("assistant", answer, at, answer_id),
            ],
        )

    async def reset(self, conversation: str) -> None:
        """Forget the context: ours, and the provider's own (a Dify conversation), too."""
        await self._store.reset_context(conversation)
        await self._store.kv_delete(provider_state_key(conversation))
