"""DingTalk end to end: the real app against the DingTalk simulator, in both receive modes.

Each test runs once with the Stream client connected to the simulated gateway and once with
the simulator POSTing signed HTTP callbacks; replies are read from what the simulated chats
show (through the sessionWebhook, the OpenAPI or an AI card).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.app.asgi import build_app
from chatgate.config import load_settings
from chatgate.core.outbox import Target
from chatgate.core.router import HandlerResult, Reply, Router
from chatgate.core.splitting import utf8_len
from chatgate.sim.dingtalk import DingTalkSim
from chatgate.sim.server import LoopbackServer
from chatgate.sim.wechat import WeChatSim
from tests.e2e.conftest import LLM
from tests.e2e.harness import (
    TOKEN,
    Gateway,
    GatewayProcess,
    gateway_in_process,
    gateway_settings,
)

pytestmark = pytest.mark.slow

TEMPLATE = "sim-ai-card.schema"
BATCH_SEND = "/v1.0/robot/oToMessages/batchSend"
GROUP_SEND = "/v1.0/robot/groupMessages/send"
STREAMING = "/v1.0/card/streaming"
MODES = ["stream", "http"]


@dataclass
class DingTalk:
    sim: DingTalkSim
    gw: Gateway
    llm: LLM

    def expected(self, *questions: str) -> str:
        return self.llm.sim.expected_answer([{"role": "user", "content": q} for q in questions])


def dt_settings(sim: DingTalkSim, mode: str, **settings: Any) -> dict[str, Any]:
    return {
        "dingtalk_client_id": sim.client_id,
        "dingtalk_client_secret": sim.client_secret,
        "dingtalk_api_base": sim.api_base,
        "dingtalk_mode": mode,
        **settings,
    }


@asynccontextmanager
async def dingtalk(
    llm: LLM, mode: str, *, sim_options: dict[str, Any] | None = None, **settings: Any
) -> AsyncIterator[DingTalk]:
    """A simulator and a gateway wired to it, connected (Stream) or with the callback URL set."""
    sim = DingTalkSim(**(sim_options or {}))
    async with (
        sim.serve(),
        gateway_in_process(llm.url, **dt_settings(sim, mode, **settings)) as gw,
    ):
        if mode == "http":
            sim.callback_url = gw.url + gw.settings.dingtalk_path
        else:
            await sim.gateway.wait_connections(1)
        yield DingTalk(sim, gw, llm)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_one_llm_call_per_msgid_even_when_redelivered(llm: LLM, mode: str) -> None:
    # Acks count as late at once, so the Stream gateway redelivers every message, on top of
    # the two extra deliveries asked for (in HTTP mode, the two extra POSTs).
    sim_options = {"ack_timeout": 0.0, "max_redeliveries": 2}
    async with dingtalk(llm, mode, sim_options=sim_options) as dt:
        question = "重复投递的问题 [delay=2]"
        sent = await dt.sim.send_text("u1", question, redeliver=2)
        shown = await dt.sim.wait_shown("u1")
        await asyncio.sleep(1.0)  # time for any duplicate reply to show up
        handed = sum(p.attempts for p in sent.pushes) if mode == "stream" else len(sent.posts)
        assert handed >= 3
        assert [s.text for s in dt.sim.shown("u1")] == [dt.expected(question)]
        assert shown[0].via == "webhook"
    assert llm.questions() == [question]


async def test_the_reply_goes_through_the_session_webhook(llm: LLM, mode: str) -> None:
    async with dingtalk(llm, mode) as dt:
        question = "你好"
        await dt.sim.send_text("u1", question)
        [shown] = await dt.sim.wait_shown("u1")
        assert (shown.via, shown.msgtype) == ("webhook", "markdown")
        assert shown.text == dt.expected(question)
        assert shown.title
        # The webhook needs no token and costs no OpenAPI call.
        assert dt.sim.api_calls(token=True) == {}


@pytest.mark.parametrize("chat", ["single", "group"])
async def test_after_the_webhook_answers_300001_the_reply_goes_through_the_openapi(
    llm: LLM, mode: str, chat: str
) -> None:
    async with dingtalk(llm, mode) as dt:
        group = "cidGroupExpiry" if chat == "group" else None
        where = group or "u1"
        question = "慢一点的问题 [delay=2]"
        await dt.sim.send_text("u1", question, group=group)
        dt.sim.expire_sessions(where)  # DingTalk ends the session before the answer is ready
        [shown] = await dt.sim.wait_shown(where)
        assert (shown.via, shown.text) == ("openapi", dt.expected(question))
        assert [c.errcode for c in dt.sim.webhook_calls] == [300001]
        assert dt.sim.api_calls() == {GROUP_SEND if group else BATCH_SEND: 1}


async def test_a_webhook_past_its_expiry_time_is_not_even_tried(llm: LLM, mode: str) -> None:
    async with dingtalk(llm, mode) as dt:
        # sessionWebhookExpiredTime 20 s ahead: inside the gateway's safety margin.
        await dt.sim.send_text("u1", "问题 [delay=1]", webhook_ttl=20)
        [shown] = await dt.sim.wait_shown("u1")
        assert shown.via == "openapi"
        assert dt.sim.webhook_calls == []


async def test_group_mentions_reach_the_model_without_the_mention(llm: LLM, mode: str) -> None:
    async with dingtalk(llm, mode) as dt:
        group = "cidGroupMention"
        unheard = await dt.sim.send_text("u1", "不@机器人的消息", group=group, at_bot=False)
        assert not unheard.delivered  # DingTalk passes only @-mentions in groups
        await dt.sim.send_text("u1", "第一个问题", group=group)
        await dt.sim.wait_shown(group, 1)
        await dt.sim.send_text("u2", "第二个问题", group=group, mention_text=True)
        shown = await dt.sim.wait_shown(group, 2)
        assert [s.text for s in shown] == [dt.expected("第一个问题"), dt.expected("第二个问题")]
        assert all(s.via == "webhook" for s in shown)
    assert llm.questions() == ["第一个问题", "第二个问题"]


async def test_each_group_member_has_a_context_of_their_own(llm: LLM, mode: str) -> None:
    async with dingtalk(llm, mode) as dt:
        group = "cidGroupContext"
        await dt.sim.send_text("u1", "我叫小明", group=group)
        await dt.sim.wait_shown(group, 1)
        await dt.sim.send_text("u2", "我叫小红", group=group)
        await dt.sim.wait_shown(group, 2)
        await dt.sim.send_text("u1", "我刚才说了什么？", group=group)
        shown = await dt.sim.wait_shown(group, 3)
        assert shown[2].text == dt.expected("我叫小明", "我刚才说了什么？")


async def test_an_answer_streams_into_an_ai_card_within_the_update_rate_cap(
    llm: LLM, mode: str
) -> None:
    interval = 0.5
    settings = {"dingtalk_card_template": TEMPLATE, "dingtalk_stream_interval": interval}
    async with dingtalk(llm, mode, **settings) as dt:
        question = "请写一段长回答 [delay=4] [len=1800]"
        await dt.sim.send_text("u1", question)
        card = await dt.sim.wait_card("u1")
        final = dt.expected(question)
        updates = card.updates
        assert card.state == "finished" and card.content == final
        assert updates[-1].is_finalize and not any(u.is_finalize for u in updates[:-1])
        assert all(u.is_full and not u.is_error for u in updates)
        # The text grows: each update extends the one before, ending with the full answer.
        assert len(updates) >= 3
        for before, after in itertools.pairwise(updates):
            assert after.content.startswith(before.content)
            assert len(after.content) >= len(before.content)
        assert len(updates[0].content) < len(final)
        # At most one update per interval, measured where DingTalk receives them.
        gaps = [b.at - a.at for a, b in itertools.pairwise(updates)]
        assert min(gaps) >= interval
        assert [s.via for s in dt.sim.shown("u1")] == ["card"]
        calls = dt.sim.api_calls()
        assert calls["/v1.0/card/instances/createAndDeliver"] == 1
        assert calls[STREAMING] == len(updates)


async def test_a_failed_answer_ends_its_card_in_the_failed_state(llm: LLM) -> None:
    settings = {"dingtalk_card_template": TEMPLATE, "dingtalk_stream_interval": 0.3}
    async with dingtalk(llm, "stream", **settings) as dt:
        await dt.sim.send_text("u1", "出错的问题 [fail=500]")
        card = await dt.sim.wait_card("u1")
        assert card.state == "failed"
        assert card.content == dt.gw.settings.llm_apology
        assert card.updates[-1].is_error


async def test_an_answer_longer_than_a_card_continues_in_messages(llm: LLM) -> None:
    settings = {"dingtalk_card_template": TEMPLATE, "dingtalk_stream_interval": 0.3}
    async with dingtalk(llm, "stream", **settings) as dt:
        question = "超长回答 [delay=2] [len=9000]"
        await dt.sim.send_text("u1", question)
        card = await dt.sim.wait_card("u1")
        shown = await dt.sim.wait_shown("u1", 2)
        assert utf8_len(card.content) <= 6000
        assert [s.via for s in shown] == ["card", "webhook"]
        assert card.content + "\n\n" + shown[1].text == dt.expected(question)


async def test_a_long_answer_is_split_into_markdown_messages_under_the_limit(
    llm: LLM, mode: str
) -> None:
    async with dingtalk(llm, mode) as dt:
        question = "很长的回答 [len=15000]"
        await dt.sim.send_text("u1", question)
        shown = await dt.sim.wait_shown("u1", 3)
        await asyncio.sleep(0.5)
        texts = dt.sim.texts("u1")
        assert len(texts) == 3 and all(utf8_len(t) <= 6000 for t in texts)
        assert "\n\n".join(texts) == dt.expected(question)
        assert all(s.via == "webhook" and s.msgtype == "markdown" for s in shown)


async def test_a_fixed_reply_is_sent_at_once_without_the_model(llm: LLM, mode: str) -> None:
    router = Router("test")

    @router.on(lambda inbound: inbound.text == "ping")
    async def pong(inbound: object) -> HandlerResult:
        return Reply("pong")

    async with DingTalkSim().serve() as sim:
        values = gateway_settings(llm.url, **dt_settings(sim, mode))
        app = build_app(load_settings(environ={}, **values), router=router)
        async with LoopbackServer(app) as server:
            if mode == "http":
                sim.callback_url = server.url + "/dingtalk"
            else:
                await sim.gateway.wait_connections(1)
            await sim.send_text("u1", "ping")
            [shown] = await sim.wait_shown("u1")
    assert shown.text == "pong"
    assert llm.sim.calls == []


async def test_backlog_older_than_the_max_age_is_ignored(llm: LLM, mode: str) -> None:
    async with dingtalk(llm, mode, dingtalk_max_age=60) as dt:
        old = await dt.sim.send_text("u1", "十分钟前的消息", age=600)
        await dt.sim.send_text("u1", "新消息")
        await dt.sim.wait_shown("u1")
        await asyncio.sleep(0.5)
        assert dt.sim.texts("u1") == [dt.expected("新消息")]
        if mode == "stream":
            assert old.pushes[0].acked.is_set()  # acknowledged, so not sent again
    assert llm.questions() == ["新消息"]


async def test_active_sending_reaches_a_user_and_a_group_through_the_openapi(llm: LLM) -> None:
    async with dingtalk(llm, "stream") as dt:
        outbox = dt.gw.services.outbox
        robot = dt.sim.robot_code
        await outbox.send(Target("dingtalk", robot, "u9"), "**早报**：今天有雨。")
        await outbox.send(Target("dingtalk", robot, "cidGroupNews", group=True), "周会改到三点")
        [news] = dt.sim.shown("u9")
        assert (news.via, news.text) == ("openapi", "**早报**：今天有雨。")
        assert dt.sim.texts("cidGroupNews") == ["周会改到三点"]
        assert dt.sim.api_calls() == {BATCH_SEND: 1, GROUP_SEND: 1}


async def test_a_bad_sign_or_skewed_timestamp_gets_403_and_touches_nothing(llm: LLM) -> None:
    async with dingtalk(llm, "http") as dt:
        data = dt.sim.message("u1", "伪造的消息")
        forged = await dt.sim.post_callback(data, headers=dt.sim.sign_headers(secret="wrong"))
        skewed = await dt.sim.post_callback(data, headers=dt.sim.sign_headers(skew=-3700))
        unsigned = await dt.sim.post_callback(data, headers={})
        assert [p.status for p in (forged, skewed, unsigned)] == [403, 403, 403]
        async with httpx.AsyncClient() as client:
            url = dt.sim.callback_url or ""
            garbage = await client.post(url, content=b"{oops", headers=dt.sim.sign_headers())
        assert garbage.status_code == 400
        await asyncio.sleep(0.3)
        assert dt.sim.shown("u1") == []
        genuine = await dt.sim.post_callback(data)
        assert genuine.status == 200
        await dt.sim.wait_shown("u1")
    assert llm.questions() == ["伪造的消息"]


async def test_stream_mode_with_a_wrong_secret_never_connects(llm: LLM) -> None:
    async with DingTalkSim().serve() as sim:
        settings = dt_settings(sim, "stream", dingtalk_client_secret="wrong-secret")
        async with gateway_in_process(llm.url, **settings):
            await asyncio.sleep(1.0)
            assert sim.gateway.opened == 0
            assert sim.api.calls["/v1.0/gateway/connections/open"] >= 1


@pytest.mark.parametrize("abrupt", [True, False], ids=["no-close-frame", "close-frame"])
async def test_the_stream_client_reconnects_after_a_drop_and_loses_no_message(
    llm: LLM, abrupt: bool
) -> None:
    async with dingtalk(llm, "stream") as dt:
        await dt.sim.send_text("u1", "断线之前 [delay=1]")
        await dt.sim.wait_shown("u1", 1)
        assert await dt.sim.gateway.drop(abrupt=abrupt) == 1
        # Sent while the client is away: the gateway holds them until it is back.
        later = [f"断线之后{i}" for i in range(3)]
        sends = [asyncio.create_task(dt.sim.send_text("u1", q, wait=20)) for q in later]
        await asyncio.gather(*sends)
        await dt.sim.wait_shown("u1", 4)
        assert dt.sim.gateway.opened == 2
        # Sent concurrently, so in any order; each answered once.
        assert sorted(dt.sim.texts("u1")[1:]) == sorted(dt.expected(q) for q in later)
    assert sorted(llm.questions()) == sorted(["断线之前 [delay=1]", *later])


async def test_the_stream_client_follows_a_disconnect_request(llm: LLM) -> None:
    async with dingtalk(llm, "stream") as dt:
        await dt.sim.gateway.disconnect(grace=5.0)
        await dt.sim.gateway.wait_connections(2)
        assert dt.sim.gateway.refused == []  # a fresh ticket for the new connection
        await dt.sim.send_text("u1", "重连之后")
        [shown] = await dt.sim.wait_shown("u1")
        assert shown.text == dt.expected("重连之后")
        assert await dt.sim.gateway.system_ping()


async def test_an_answer_cut_off_by_a_crash_is_delivered_once_after_the_restart(
    llm: LLM, tmp_path: Path
) -> None:
    async with DingTalkSim().serve() as sim:
        settings = dt_settings(sim, "stream", store=f"sqlite:///{tmp_path / 'gw.db'}")
        gateway = GatewayProcess(llm.url, **settings)
        async with gateway:
            await sim.gateway.wait_connections(1, within=30)
            question = "崩溃前的问题 [delay=4]"
            await sim.send_text("u1", question)
            await asyncio.sleep(1.0)  # the answer is being written …
            await gateway.stop(signal.SIGKILL)  # … when the process dies
            assert sim.shown("u1") == []
            await gateway.start()
            [shown] = await sim.wait_shown("u1", within=30)
            await asyncio.sleep(1.0)  # time for a second copy, were one to come
        assert shown.text == llm.sim.expected_answer([{"role": "user", "content": question}])
        assert len(sim.shown("u1")) == 1
    # The job restarts from scratch after a crash: a second call, but one reply.
    assert llm.questions() == [question, question]


async def test_wechat_and_dingtalk_are_served_by_one_process(llm: LLM) -> None:
    async with dingtalk(llm, "stream") as dt:
        wechat = WeChatSim(dt.gw.wechat_url, TOKEN)
        on_wechat = await wechat.send_text("o_user", "微信上的问题")
        await dt.sim.send_text("u1", "钉钉上的问题")
        [on_dingtalk] = await dt.sim.wait_shown("u1")
    assert on_wechat.kind == "reply" and on_wechat.text == dt.expected("微信上的问题")
    assert on_dingtalk.text == dt.expected("钉钉上的问题")
    assert sorted(llm.questions()) == sorted(["微信上的问题", "钉钉上的问题"])
