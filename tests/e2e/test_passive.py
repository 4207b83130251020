"""Passive delivery end to end: the simulator plays WeChat's real 5 s × 3 timing against the app."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from chatgate.sim.wechat import WeChatSim
from chatgate.store.memory import MemoryStore
from tests.e2e.conftest import LLM
from tests.e2e.harness import AES_KEY, APPID, TOKEN, gateway_in_process

pytestmark = pytest.mark.slow


def expected(llm: LLM, *questions: str) -> str:
    return llm.sim.expected_answer([{"role": "user", "content": q} for q in questions])


@pytest.mark.parametrize(
    ("delay", "tries"),
    [(1, 1), (9, 2), (13, 3)],
    ids=["1s-answer-on-try-1", "9s-answer-on-try-2", "13s-answer-on-try-3"],
)
async def test_answer_arrives_inline_on_the_try_whose_window_it_fits(
    llm: LLM, delay: int, tries: int
) -> None:
    async with gateway_in_process(llm.url) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        question = f"问题 [delay={delay}]"
        outcome = await sim.send_text("u1", question)
    assert outcome.kind == "reply"
    assert outcome.tries == tries
    assert outcome.text == expected(llm, question)
    assert llm.questions() == [question]


async def test_slow_answer_gets_placeholder_then_arrives_with_1(llm: LLM) -> None:
    async with gateway_in_process(llm.url) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        question = "慢问题 [delay=25]"
        first = await sim.send_text("u1", question)
        assert first.kind == "reply" and first.tries == 3
        assert "回复「1」" in (first.text or "")
        fetched = await sim.send_text("u1", "1")  # arrives ~15 s in; waits for the answer
        assert fetched.kind == "reply"
        assert fetched.text == expected(llm, question)
        again = await sim.send_text("u1", "1")
        assert again.text == gw.services.texts.nothing_pending
    assert llm.questions() == [question]


async def test_encrypted_safe_mode_round_trip(llm: LLM) -> None:
    async with gateway_in_process(llm.url, wechat_aes_key=AES_KEY) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN, appid=APPID, aes_key=AES_KEY)
        outcome = await sim.send_text("u1", "加密问题")
        assert await sim.verify_url()
    assert outcome.kind == "reply"
    assert outcome.text == expected(llm, "加密问题")
    assert all("encrypt_type" in r.params for r in sim.sent if r.method == "POST")


async def test_a_long_answer_is_split_and_each_1_returns_the_next_part(llm: LLM) -> None:
    async with gateway_in_process(llm.url) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        question = "长回答 [len=6000]"
        shown = [await sim.send_text("u1", question)]
        while (shown[-1].text or "").endswith(gw.services.texts.more):
            shown.append(await sim.send_text("u1", "1"))
    texts = [o.text or "" for o in shown]
    assert len(texts) >= 3
    assert all(len(t.encode()) <= 2048 for t in texts)
    body = [t.removesuffix(gw.services.texts.more) for t in texts]
    assert "\n\n".join(body) == expected(llm, question)
    assert llm.questions() == [question]


async def test_message_typed_while_an_answer_is_pending_is_answered_too(llm: LLM) -> None:
    async with gateway_in_process(llm.url) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        slow = "第一个问题 [delay=20]"
        placeholder = await sim.send_text("u1", slow)
        assert "回复「1」" in (placeholder.text or "")
        quick = "第二个问题 [delay=1]"
        second = await sim.send_text("u1", quick)  # sent while the first is still running
        assert second.kind == "reply"
        assert (second.text or "").startswith(expected(llm, slow, quick))
        assert second.text.endswith(gw.services.texts.pending_notice)
        first = await sim.send_text("u1", "1")
        assert first.text == expected(llm, slow)
    assert llm.questions() == [slow, quick]


async def post_raw(url: str, body: bytes, *, sign: bool = True) -> httpx.Response:
    from chatgate.sim.wechat_crypto import sha1_signature

    params = {"timestamp": "1700000000", "nonce": "42"}
    params["signature"] = sha1_signature(TOKEN, "1700000000", "42") if sign else "0" * 40
    async with httpx.AsyncClient() as client:
        return await client.post(url, params=params, content=body)


async def test_bad_input_gets_4xx_stores_nothing_and_the_server_keeps_serving(llm: LLM) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b"<xml><Content>&c;</Content></xml>"
    )
    good = (
        "<xml><ToUserName><![CDATA[gh_a]]></ToUserName><FromUserName><![CDATA[u1]]></FromUserName>"
        "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[你好]]></Content><MsgId>1234567890</MsgId></xml>"
    ).encode()
    async with gateway_in_process(llm.url) as gw:
        assert (await post_raw(gw.wechat_url, good, sign=False)).status_code == 403
        assert (await post_raw(gw.wechat_url, b"<xml><oops>")).status_code == 400
        assert (await post_raw(gw.wechat_url, bomb)).status_code == 400
        assert (await post_raw(gw.wechat_url, b"<xml>" + b"a" * 200_000)).status_code == 413
        store = gw.services.store
        assert isinstance(store, MemoryStore)
        assert await store.unfinished_answers() == []
        assert await store.conversation_answers("wechat_mp:gh_a:u1") == []
        ok = await post_raw(gw.wechat_url, good)
        assert ok.status_code == 200 and "你问" in ok.text
    assert len(llm.sim.calls) == 1


async def test_url_verification_echoes_and_refuses_a_bad_signature(llm: LLM) -> None:
    from chatgate.sim.wechat_crypto import sha1_signature

    async with gateway_in_process(llm.url) as gw, httpx.AsyncClient() as client:
        params = {"timestamp": "1", "nonce": "2", "echostr": "hello123"}
        good = await client.get(
            gw.wechat_url, params={**params, "signature": sha1_signature(TOKEN, "1", "2")}
        )
        bad = await client.get(gw.wechat_url, params={**params, "signature": "x"})
        missing = await client.get(gw.wechat_url, params={"echostr": "hello123"})
    assert good.status_code == 200 and good.text == "hello123"
    assert bad.status_code == 403 and missing.status_code == 403


async def test_healthz_is_alive_and_readyz_reaches_the_store(llm: LLM, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'gw.db'}"
    async with gateway_in_process(llm.url, store=store) as gw, httpx.AsyncClient() as client:
        alive = await client.get(gw.url + "/healthz")
        ready = await client.get(gw.url + "/readyz")
        await gw.services.store.close()  # the store goes away: no longer ready, still alive
        unready = await client.get(gw.url + "/readyz")
        still_alive = await client.get(gw.url + "/healthz")
    assert alive.status_code == 200 and ready.status_code == 200
    assert unready.status_code == 503 and still_alive.status_code == 200
