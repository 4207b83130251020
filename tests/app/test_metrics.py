"""``/metrics``: Prometheus text on a per-app registry, losses at zero from the start, a token."""

from __future__ import annotations

import httpx

from chatgate.app.metrics import PrometheusTelemetry
from chatgate.core.dispatcher import new_page_token
from chatgate.sim.wechat import WeChatSim
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus
from chatgate.store.memory import MemoryStore
from tests.app.support import serve_app, total, value
from tests.e2e.harness import TOKEN


def test_telemetry_events_become_prometheus_samples() -> None:
    t = PrometheusTelemetry(["wechat_mp"])
    t.message_received("wechat_mp", "text")
    t.try_seen("wechat_mp", 1)
    t.try_seen("wechat_mp", 2)
    t.try_seen("wechat_mp", 9)
    t.delivered("wechat_mp", "inline_try_2")
    t.llm_call("openai", 1.5, None)
    t.llm_call("openai", 30.0, "429")
    t.platform_api_error("wechat_mp", "45015")
    t.token_refresh("wechat_mp")
    t.track_jobs(queued=lambda: 3, running=lambda: 2)
    text, content_type = t.render()
    out = text.decode()
    assert content_type.startswith("text/plain")
    assert value(out, "chatgate_messages_received_total", channel="wechat_mp", kind="text") == 1
    assert value(out, "chatgate_tries_total", channel="wechat_mp", attempt="2") == 1
    assert value(out, "chatgate_tries_total", channel="wechat_mp", attempt="6+") == 1
    assert value(out, "chatgate_deliveries_total", channel="wechat_mp", path="inline_try_2") == 1
    assert value(out, "chatgate_deliveries_total", channel="wechat_mp", path="fetch") == 0
    assert value(out, "chatgate_llm_calls_total", provider="openai") == 2
    assert value(out, "chatgate_llm_errors_total", provider="openai", code="429") == 1
    assert value(out, "chatgate_llm_call_seconds_count", provider="openai") == 2
    assert value(out, "chatgate_llm_call_seconds_bucket", provider="openai", le="2.0") == 1
    assert value(out, "chatgate_platform_api_errors_total", platform="wechat_mp", code="45015")
    assert value(out, "chatgate_token_refreshes_total", platform="wechat_mp") == 1
    assert value(out, "chatgate_jobs_queued") == 3
    assert value(out, "chatgate_jobs_running") == 2
    # Losses exist at zero for every reason before any happens, so an alert has a series.
    assert total(out, "chatgate_answers_lost_total", channel="wechat_mp") == 0
    assert (
        value(out, "chatgate_answers_lost_total", channel="wechat_mp", reason="expired_unfinished")
        == 0
    )


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it() -> None:
    body, content_type = PrometheusTelemetry().render("application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().rstrip().endswith("# EOF")


async def test_each_app_counts_only_its_own_traffic() -> None:
    async with (
        serve_app() as one,
        serve_app() as two,
        httpx.AsyncClient() as client,
    ):
        outcome = await WeChatSim(one.wechat_url, TOKEN).send_text("u1", "你好")
        assert outcome.kind == "reply"
        first = (await client.get(one.url + "/metrics")).text
        second = (await client.get(two.url + "/metrics")).text
    assert total(first, "chatgate_messages_received_total") == 1
    assert total(second, "chatgate_messages_received_total") == 0
    assert value(first, "chatgate_llm_calls_total", provider="fake") == 1
    assert value(second, "chatgate_llm_calls_total", provider="fake") is None


async def test_a_metrics_token_is_required_when_set() -> None:
    secret = "scrape-secret-123"
    async with (
        serve_app(metrics_token=secret) as gw,
        httpx.AsyncClient() as client,
    ):
        missing = await client.get(gw.url + "/metrics")
        wrong = await client.get(gw.url + "/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert right.status_code == 200 and "chatgate_build_info" in right.text


async def test_an_answer_first_read_on_its_page_counts_one_page_delivery() -> None:
    store = MemoryStore()
    unread = AnswerRecord(
        id="a1",
        conversation="wechat_mp:gh_a:u1",
        dedup_key="m1",
        kind=AnswerKind.LLM,
        question="q",
        page_token=new_page_token(),
        status=AnswerStatus.DONE,
        text="the answer",
    )
    seen = unread.with_changes(id="a2", dedup_key="m2", page_token=new_page_token())
    async with serve_app(store, public_url="https://bot.example.com") as gw:
        await store.create_answer(unread)
        await store.create_answer(seen)
        await store.mark_delivered("a2", 3)  # part of it was shown in the chat already
        async with httpx.AsyncClient() as client:
            for token in (unread.page_token, unread.page_token, seen.page_token):
                assert (await client.get(f"{gw.url}/a/{token}")).status_code == 200
            text = (await client.get(gw.url + "/metrics")).text
    assert value(text, "chatgate_deliveries_total", channel="wechat_mp", path="page") == 1
