"""Media: voice transcripts are text, images reach a vision model, the rest is told what works."""

from __future__ import annotations

import pytest

from chatgate.core.decisions import Ask, Fetch, Reply
from chatgate.core.media import Media, VoiceAsText
from chatgate.core.messages import Kind
from chatgate.core.router import Router
from chatgate.core.rules import parse_rules
from chatgate.core.texts import Texts
from chatgate.providers.base import ImagePart
from chatgate.store.memory import MemoryStore
from tests.core.conftest import ScriptedProvider
from tests.core.feature_support import build_feature_core, feature_router, final, message

TEXTS = Texts()
PIC = "http://mmbiz.example/pic.jpg"


def router(vision: bool = False) -> Router:
    rules = parse_rules({"rule": [{"exact": "营业时间", "reply": "9 to 5"}]})
    return feature_router(
        routers=[rules.router(), Media(TEXTS, vision=vision).router()],
        middleware=[VoiceAsText()],
    )


async def test_recognised_voice_is_treated_as_the_typed_text() -> None:
    root = router()
    assert await root.resolve(message("今天天气怎么样？", kind=Kind.VOICE)) == Ask(
        "今天天气怎么样？"
    )
    assert await root.resolve(message("营业时间。", kind=Kind.VOICE)) == Reply("9 to 5")
    assert await root.resolve(message("1", kind=Kind.VOICE)) == Fetch()


async def test_voice_without_recognition_is_asked_to_type() -> None:
    assert await router().resolve(message("", kind=Kind.VOICE)) == Reply(TEXTS.voice_unrecognized)


@pytest.mark.parametrize("kind", [Kind.VIDEO, Kind.LOCATION, Kind.LINK, Kind.OTHER])
async def test_other_media_get_one_line_saying_what_is_supported(kind: Kind) -> None:
    assert await router().resolve(message("", kind=kind)) == Reply(TEXTS.unsupported)
    assert await router(vision=True).resolve(message("", kind=kind)) == Reply(
        TEXTS.unsupported_with_images
    )


async def test_an_image_is_asked_about_only_with_vision() -> None:
    image = message("", kind=Kind.IMAGE, media_url=PIC)
    assert await router(vision=True).resolve(image) == Ask(TEXTS.image_question, images=(PIC,))
    assert await router(vision=False).resolve(image) == Reply(TEXTS.unsupported)


async def test_the_image_url_reaches_the_provider(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    core = build_feature_core(store, provider, routers=[Media(TEXTS, vision=True).router()])
    record = await final(core, message("", kind=Kind.IMAGE, media_url=PIC))
    assert record.text == f"answer to {TEXTS.image_question}"
    last = provider.calls[0].messages[-1]
    assert last.images == (ImagePart(PIC),)
    await core.supervisor.drain(1.0)
