"""Media: recognised voice is typed text; images go to a vision model; the rest gets a one-liner.

- Voice with a transcript (WeChat's ``Recognition``) continues as a text message with that
  text (``VoiceAsText``, an outer middleware), so commands, keyword rules and 「1」 work by
  voice too. Voice without one is told to type instead.
- An image is asked about with its URL when the model can see (``CHATGATE_LLM_VISION``);
  otherwise, like video, location, link and anything else, it gets a friendly line saying
  what is supported.
"""

from __future__ import annotations

import dataclasses

from chatgate.core.decisions import UNHANDLED, Ask, Handler, HandlerResult, Reply
from chatgate.core.messages import Inbound, Kind
from chatgate.core.router import Router, kind_is
from chatgate.core.texts import Texts


class VoiceAsText:
    """Outer middleware: a voice message with a transcript becomes the text message it says."""

    async def __call__(self, handler: Handler, inbound: Inbound) -> HandlerResult:
        if inbound.kind is Kind.VOICE and inbound.text.strip():
            inbound = dataclasses.replace(inbound, kind=Kind.TEXT, text=inbound.text.strip())
        return await handler(inbound)


class Media:
    """The media router's handlers."""

    def __init__(self, texts: Texts, *, vision: bool) -> None:
        self._texts = texts
        self._vision = vision
        self._unsupported = texts.unsupported_with_images if vision else texts.unsupported

    def router(self) -> Router:
        router = Router("media")
        router.add(self.voice, kind_is(Kind.VOICE))
        router.add(self.image, kind_is(Kind.IMAGE))
        router.add(self.unsupported, kind_is(Kind.VIDEO, Kind.LOCATION, Kind.LINK, Kind.OTHER))
        return router

    async def voice(self, inbound: Inbound) -> HandlerResult:
        if inbound.text.strip():  # a transcript, without VoiceAsText in front: the model asks
            return UNHANDLED
        return Reply(self._texts.voice_unrecognized)

    async def image(self, inbound: Inbound) -> HandlerResult:
        if self._vision and inbound.media_url:
            return Ask(self._texts.image_question, images=(inbound.media_url,))
        return Reply(self._unsupported)

    async def unsupported(self, inbound: Inbound) -> HandlerResult:
        return Reply(self._unsupported)
