"""The Store contract: every backend in ``support.BACKENDS`` must pass every test here."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.errors import StoreError
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Store, Turn
from tests.store.support import (
    CONV,
    OTHER_CONV,
    SETTLE,
    WITHIN,
    Backend,
    FakeClock,
    make_answer,
    make_turns,
)


class TestStoreContract:
    # -- lifecycle ------------------------------------------------------------------------
    async def test_store_satisfies_the_protocol(self, store: Store) -> None:
        assert isinstance(store, Store)

    async def test_open_and_close_are_idempotent(self, store: Store) -> None:
        await store.open()
        await store.ping()
        await store.close()
        await store.close()

    # -- message claims -------------------------------------------------------------------
    async def test_first_claim_wins_and_retries_get_its_answer_id(self, store: Store) -> None:
        assert await store.claim_message("msg-1", "answer-1", ttl=60) is None
        assert await store.claim_message("msg-1", "answer-2", ttl=60) == "answer-1"
        assert await store.claim_message("msg-1", "answer-3", ttl=60) == "answer-1"

    async def test_exactly_one_of_50_concurrent_claims_wins(self, store: Store) -> None:
        results = await asyncio.gather(
            *(store.claim_message("msg-1", f"answer-{i}", ttl=60) for i in range(50))
        )
        winners = [i for i, result in enumerate(results) if result is None]
        assert len(winners) == 1
        assert {r for r in results if r is not None} == {f"answer-{winners[0]}"}

    async def test_claims_of_different_keys_are_independent(self, store: Store) -> None:
        assert await store.claim_message("msg-1", "answer-1", ttl=60) is None
        assert await store.claim_message("msg-2", "answer-2", ttl=60) is None

    async def test_claim_can_be_made_again_once_it_expires(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.claim_message("msg-1", "answer-1", ttl=60)
        clock.advance(59)
        assert await store.claim_message("msg-1", "answer-2", ttl=60) == "answer-1"
        clock.advance(1)
        assert await store.claim_message("msg-1", "answer-2", ttl=60) is None
        assert await store.claim_message("msg-1", "answer-3", ttl=60) == "answer-2"

    # -- answers --------------------------------------------------------------------------
    async def test_created_answer_reads_back_unchanged_with_seq_assigned(
        self, store: Store
    ) -> None:
        record = make_answer("a1", meta={"images": "https://x/1.jpg", "来源": "微信"})
        created = await store.create_answer(record)
        assert created.seq > 0
        assert created == record.with_changes(seq=created.seq)
        assert await store.get_answer("a1") == created

    async def test_seq_increases_in_creation_order(self, store: Store) -> None:
        seqs = [(await store.create_answer(make_answer(f"a{i}"))).seq for i in range(5)]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 5

    async def test_creating_an_existing_answer_id_raises_store_error(self, store: Store) -> None:
        await store.create_answer(make_answer("a1"))
        with pytest.raises(StoreError):
            await store.create_answer(make_answer("a1").with_changes(page_token="fresh"))

    async def test_unknown_answer_is_none_everywhere(self, store: Store) -> None:
        assert await store.get_answer("nope") is None
        assert await store.get_answer_by_token("nope") is None
        assert await store.update_answer("nope", status=AnswerStatus.DONE) is None
        assert await store.mark_delivered("nope", 3) is None
        assert await store.wait_answer("nope", timeout=WITHIN) is None
        assert [r async for r in store.watch_answer("nope")] == []
        await store.append_answer_text("nope", "ignored")

    async def test_returned_meta_is_a_copy(self, store: Store) -> None:
        created = await store.create_answer(make_answer("a1", meta={"k": "v"}))
        created.meta["k"] = "changed"
        fetched = await store.get_answer("a1")
        assert fetched is not None
        fetched.meta["k"] = "changed"
        assert (await store.get_answer("a1")) == make_answer("a1", meta={"k": "v"}).with_changes(
            seq=created.seq
        )

    async def test_answer_is_found_by_page_token_until_it_expires(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.create_answer(make_answer("a1", expires_at=clock() + 60))
        await store.create_answer(make_answer("forever"))
        found = await store.get_answer_by_token("token-a1")
        assert found is not None and found.id == "a1"
        clock.advance(60)
        assert await store.get_answer_by_token("token-a1") is None
        assert await store.get_answer_by_token("token-forever") is not None

    async def test_appended_text_is_visible_while_the_answer_runs(self, store: Store) -> None:
        await store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        await store.append_answer_text("a1", "你好")
        await store.append_answer_text("a1", "，世界")
        partial = await store.get_answer("a1")
        assert partial is not None
        assert partial.text == "你好，世界"
        assert partial.status is AnswerStatus.RUNNING
        by_token = await store.get_answer_by_token("token-a1")
        assert by_token is not None and by_token.text == "你好，世界"

    async def test_append_stamps_updated_at(self, store: Store, clock: FakeClock) -> None:
        await store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        clock.advance(5)
        await store.append_answer_text("a1", "x")
        record = await store.get_answer("a1")
        assert record is not None and record.updated_at == clock()

    async def test_text_appended_after_the_answer_finished_is_ignored(self, store: Store) -> None:
        await store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        await store.update_answer("a1", status=AnswerStatus.FAILED, text="stopped")
        await store.append_answer_text("a1", " late chunk")
        record = await store.get_answer("a1")
        assert record is not None and record.text == "stopped"

    async def test_update_answer_changes_only_given_fields_and_merges_meta(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.create_answer(make_answer("a1", text="draft", meta={"a": "1", "b": "2"}))
        clock.advance(3)
        updated = await store.update_answer("a1", meta={"b": "3", "c": "4"})
        assert updated is not None
        assert updated.meta == {"a": "1", "b": "3", "c": "4"}
        assert (updated.status, updated.text, updated.error) == (AnswerStatus.QUEUED, "draft", None)
        assert updated.updated_at == clock()
        assert updated.finished_at is None
        assert await store.get_answer("a1") == updated

        updated = await store.update_answer("a1", status=AnswerStatus.RUNNING, text="")
        assert updated is not None
        assert (updated.status, updated.text) == (AnswerStatus.RUNNING, "")
        assert updated.meta == {"a": "1", "b": "3", "c": "4"}

    async def test_terminal_status_stamps_finished_at_once(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        clock.advance(7)
        finished_at = clock()
        done = await store.update_answer("a1", status=AnswerStatus.FAILED, error="timeout")
        assert done is not None
        assert done.finished and done.finished_at == finished_at
        assert done.error == "timeout"
        clock.advance(7)
        later = await store.update_answer("a1", meta={"note": "x"})
        assert later is not None
        assert later.finished_at == finished_at
        assert later.updated_at == clock()

    async def test_mark_delivered_never_lowers(self, store: Store) -> None:
        await store.create_answer(make_answer("a1", status=AnswerStatus.DONE, text="0123456789"))
        first = await store.mark_delivered("a1", 6)
        assert first is not None and first.delivered_upto == 6
        lower = await store.mark_delivered("a1", 3)
        assert lower is not None and lower.delivered_upto == 6
        full = await store.mark_delivered("a1", 10)
        assert full is not None and full.delivered_upto == 10 and full.fully_delivered
        assert await store.get_answer("a1") == full

    # -- waiting and watching -------------------------------------------------------------
    async def test_wait_answer_returns_at_once_for_a_finished_answer(self, store: Store) -> None:
        await store.create_answer(make_answer("a1", status=AnswerStatus.DONE, text="ok"))
        async with asyncio.timeout(WITHIN):
            record = await store.wait_answer("a1", timeout=3600)
        assert record is not None and record.text == "ok"

    async def test_wait_answer_wakes_when_the_answer_finishes(self, store: Store) -> None:
        await store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        waiter = asyncio.create_task(store.wait_answer("a1", timeout=3600))
        await asyncio.sleep(SETTLE)
        assert not waiter.done()
        await store.append_answer_text("a1", "partial")
        await asyncio.sleep(SETTLE)
        assert not waiter.done()
        await store.update_answer("a1", status=AnswerStatus.DONE, text="final")
        async with asyncio.timeout(WITHIN):
            record = await waiter
        assert record is not None
        assert (record.status, record.text) == (AnswerStatus.DONE, "final")

    async def test_wait_answer_returns_the_running_record_on_timeout(self, store: Store) -> None:
        await store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        await store.append_answer_text("a1", "so far")
        async with asyncio.timeout(WITHIN):
            record = await store.wait_answer("a1", timeout=0.05)
        assert record is not None
        assert (record.status, record.text) == (AnswerStatus.RUNNING, "so far")

    async def test_watch_answer_yields_growing_text_then_stops_after_terminal(
        self, store: Store
    ) -> None:
        await store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        seen: asyncio.Queue[AnswerRecord] = asyncio.Queue()

        async def consume() -> None:
            async for record in store.watch_answer("a1"):
                await seen.put(record)

        consumer = asyncio.create_task(consume())
        async with asyncio.timeout(WITHIN):
            assert (await seen.get()).text == ""
            await store.append_answer_text("a1", "Hel")
            assert (await seen.get()).text == "Hel"
            await store.append_answer_text("a1", "lo")
            assert (await seen.get()).text == "Hello"
            await store.update_answer("a1", status=AnswerStatus.DONE)
            last = await seen.get()
            assert last.finished and last.text == "Hello"
            await consumer
        assert seen.empty()

    async def test_watch_answer_of_a_finished_answer_yields_it_once(self, store: Store) -> None:
        await store.create_answer(make_answer("a1", status=AnswerStatus.DONE, text="done"))
        async with asyncio.timeout(WITHIN):
            records = [r async for r in store.watch_answer("a1")]
        assert [(r.status, r.text) for r in records] == [(AnswerStatus.DONE, "done")]

    async def test_watch_answer_reports_delivery_progress(self, store: Store) -> None:
        await store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING, text="abc"))
        watch = store.watch_answer("a1")
        async with asyncio.timeout(WITHIN):
            assert (await anext(watch)).delivered_upto == 0
            await store.mark_delivered("a1", 2)
            assert (await anext(watch)).delivered_upto == 2
        await watch.aclose()  # type: ignore[attr-defined]

    # -- answers after a crash, and per conversation --------------------------------------
    async def test_unfinished_llm_answers_are_found_after_a_restart(
        self, backend: Backend, store: Store
    ) -> None:
        await store.create_answer(make_answer("queued"))
        await store.create_answer(make_answer("running", status=AnswerStatus.RUNNING))
        await store.append_answer_text("running", "partial")
        await store.create_answer(make_answer("done", status=AnswerStatus.DONE))
        await store.create_answer(make_answer("failed", status=AnswerStatus.FAILED))
        await store.create_answer(make_answer("reply", kind=AnswerKind.REPLY))

        store = await backend.restart(store)

        unfinished = await store.unfinished_answers()
        assert [(r.id, r.status, r.text) for r in unfinished] == [
            ("queued", AnswerStatus.QUEUED, ""),
            ("running", AnswerStatus.RUNNING, "partial"),
        ]

    async def test_conversation_answers_are_the_newest_oldest_first(self, store: Store) -> None:
        for i in range(4):
            await store.create_answer(make_answer(f"a{i}"))
        await store.create_answer(make_answer("elsewhere", conversation=OTHER_CONV))
        assert [r.id for r in await store.conversation_answers(CONV)] == ["a0", "a1", "a2", "a3"]
        assert [r.id for r in await store.conversation_answers(CONV, limit=2)] == ["a2", "a3"]

    async def test_undelivered_only_skips_fully_delivered_answers(self, store: Store) -> None:
        done, failed, running = AnswerStatus.DONE, AnswerStatus.FAILED, AnswerStatus.RUNNING
        await store.create_answer(make_answer("shown", status=done, text="ab", delivered_upto=2))
        await store.create_answer(make_answer("half", status=done, text="abcd", delivered_upto=2))
        await store.create_answer(make_answer("running", status=running, text="ab"))
        await store.create_answer(make_answer("apology", status=failed, text="x", delivered_upto=1))
        await store.create_answer(
            make_answer("reply", kind=AnswerKind.REPLY, status=done, text="hi")
        )
        await store.create_answer(
            make_answer("other", conversation=OTHER_CONV, status=done, text="zz")
        )
        undelivered = await store.conversation_answers(CONV, undelivered_only=True)
        assert [r.id for r in undelivered] == ["half", "running", "reply"]
        await store.mark_delivered("half", 4)
        undelivered = await store.conversation_answers(CONV, undelivered_only=True)
        assert [r.id for r in undelivered] == ["running", "reply"]

    # -- conversations --------------------------------------------------------------------
    async def test_recent_turns_are_the_last_n_oldest_first(self, store: Store) -> None:
        turns = make_turns(6)
        await store.append_turns(CONV, turns[:2])
        await store.append_turns(CONV, turns[2:])
        await store.append_turns(OTHER_CONV, make_turns(3, start=100))
        assert await store.recent_turns(CONV, 10) == turns
        assert await store.recent_turns(CONV, 3) == turns[3:]
        assert await store.recent_turns(CONV, 0) == []
        assert await store.recent_turns("nobody", 5) == []

    async def test_turn_fields_round_trip(self, store: Store) -> None:
        turn = Turn(role="assistant", content="答案\n第二行", at=1234.5, answer_id="a1")
        await store.append_turns(CONV, [turn])
        assert await store.history(CONV) == [turn]

    async def test_reset_context_hides_earlier_turns_from_recent_turns_only(
        self, store: Store
    ) -> None:
        before, after = make_turns(4), make_turns(2, start=4)
        await store.append_turns(CONV, before)
        await store.reset_context(CONV)
        assert await store.recent_turns(CONV, 10) == []
        await store.append_turns(CONV, after)
        assert await store.recent_turns(CONV, 10) == after
        assert await store.recent_turns(CONV, 1) == after[1:]
        assert await store.history(CONV, limit=10) == before + after

    async def test_history_pages_backwards_with_before(self, store: Store) -> None:
        turns = make_turns(10)  # at 1000.0 … 1009.0
        await store.append_turns(CONV, turns)
        assert await store.history(CONV, limit=4) == turns[6:]
        assert await store.history(CONV, limit=4, before=turns[6].at) == turns[2:6]
        assert await store.history(CONV, limit=4, before=turns[2].at) == turns[:2]
        assert await store.history(CONV, limit=4, before=turns[0].at) == []

    async def test_delete_conversation_removes_its_turns_answers_and_claims(
        self, store: Store
    ) -> None:
        for conv, answer_id in ((CONV, "mine"), (OTHER_CONV, "theirs")):
            await store.claim_message(f"msg-{answer_id}", answer_id, ttl=60)
            await store.create_answer(make_answer(answer_id, conversation=conv))
            await store.append_turns(conv, make_turns(2))
        await store.reset_context(CONV)

        await store.delete_conversation(CONV)

        assert await store.get_answer("mine") is None
        assert await store.get_answer_by_token("token-mine") is None
        assert await store.conversation_answers(CONV) == []
        assert await store.history(CONV) == []
        assert await store.claim_message("msg-mine", "new", ttl=60) is None
        assert await store.get_answer("theirs") is not None
        assert len(await store.history(OTHER_CONV)) == 2
        assert await store.claim_message("msg-theirs", "new", ttl=60) == "theirs"
        # The reset went too: the user starts over with a clean slate.
        fresh = make_turns(1, start=50)
        await store.append_turns(CONV, fresh)
        assert await store.recent_turns(CONV, 10) == fresh

    # -- small keyed values ---------------------------------------------------------------
    async def test_kv_set_get_delete(self, store: Store) -> None:
        assert await store.kv_get("k") is None
        await store.kv_set("k", "v1")
        assert await store.kv_get("k") == "v1"
        await store.kv_set("k", "v2")
        assert await store.kv_get("k") == "v2"
        await store.kv_delete("k")
        assert await store.kv_get("k") is None
        await store.kv_delete("k")

    async def test_kv_value_expires_after_its_ttl(self, store: Store, clock: FakeClock) -> None:
        await store.kv_set("token", "abc", ttl=7200)
        await store.kv_set("forever", "x")
        clock.advance(7199)
        assert await store.kv_get("token") == "abc"
        clock.advance(1)
        assert await store.kv_get("token") is None
        clock.advance(10**9)
        assert await store.kv_get("forever") == "x"

    async def test_kv_set_replaces_the_ttl(self, store: Store, clock: FakeClock) -> None:
        await store.kv_set("k", "short", ttl=10)
        await store.kv_set("k", "kept")
        clock.advance(20)
        assert await store.kv_get("k") == "kept"

    async def test_incr_counts_within_a_window_that_starts_at_the_first_call(
        self, store: Store, clock: FakeClock
    ) -> None:
        assert await store.incr("rate:u1", ttl=60) == 1
        clock.advance(30)
        assert await store.incr("rate:u1", ttl=60) == 2
        assert await store.kv_get("rate:u1") == "2"
        clock.advance(30)  # the window opened by the first call is over
        assert await store.incr("rate:u1", ttl=60) == 1
        assert await store.incr("rate:u2", ttl=60) == 1

    async def test_incr_continues_a_value_set_without_ttl(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.kv_set("n", "41")
        assert await store.incr("n", ttl=5) == 42
        clock.advance(10)
        assert await store.kv_get("n") == "42"

    async def test_incr_of_a_non_number_raises_store_error(self, store: Store) -> None:
        await store.kv_set("k", "hello")
        with pytest.raises(StoreError):
            await store.incr("k", ttl=60)
        assert await store.kv_get("k") == "hello"

    # -- locks ----------------------------------------------------------------------------
    async def test_lock_excludes_a_second_holder_until_released(self, store: Store) -> None:
        events: list[str] = []

        async def second() -> None:
            async with store.lock("token-refresh"):
                events.append("second in")

        async with store.lock("token-refresh"):
            events.append("first in")
            waiter = asyncio.create_task(second())
            await asyncio.sleep(SETTLE)
            events.append("first out")
        async with asyncio.timeout(WITHIN):
            await waiter
        assert events == ["first in", "first out", "second in"]

    async def test_locks_of_different_names_do_not_exclude(self, store: Store) -> None:
        async with asyncio.timeout(WITHIN), store.lock("a"), store.lock("b"):
            pass

    async def test_lock_is_released_when_the_body_raises(self, store: Store) -> None:
        with pytest.raises(RuntimeError):
            async with store.lock("a"):
                raise RuntimeError("boom")
        async with asyncio.timeout(WITHIN), store.lock("a"):
            pass

    async def test_a_cancelled_lock_waiter_leaves_the_lock_usable(self, store: Store) -> None:
        async def wait_for_it() -> None:
            async with store.lock("job"):
                pass

        async with store.lock("job"):
            waiter = asyncio.create_task(wait_for_it())
            await asyncio.sleep(SETTLE)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        async with asyncio.timeout(WITHIN), store.lock("job"):
            pass

    async def test_lock_of_a_dead_holder_expires_after_its_ttl(
        self, store: Store, clock: FakeClock
    ) -> None:
        dead = store.lock("job", ttl=10)
        await dead.__aenter__()  # the holder "dies": it never leaves
        entered = asyncio.Event()

        async def enter() -> None:
            async with store.lock("job", ttl=10):
                entered.set()

        waiter = asyncio.create_task(enter())
        await asyncio.sleep(SETTLE)
        assert not entered.is_set()
        clock.advance(10)
        async with asyncio.timeout(WITHIN):
            await waiter
        assert entered.is_set()

        await dead.__aexit__(None, None, None)

    async def test_a_late_release_by_an_expired_holder_frees_nobody_elses_lock(
        self, store: Store, clock: FakeClock
    ) -> None:
        expired = store.lock("job", ttl=10)
        await expired.__aenter__()
        clock.advance(10)
        third_in = asyncio.Event()

        async def third() -> None:
            async with store.lock("job", ttl=10):
                third_in.set()

        async with asyncio.timeout(WITHIN), store.lock("job", ttl=10):
            await expired.__aexit__(None, None, None)
            waiter = asyncio.create_task(third())
            await asyncio.sleep(SETTLE)
            assert not third_in.is_set()
        async with asyncio.timeout(WITHIN):
            await waiter

    # -- housekeeping ---------------------------------------------------------------------
    async def test_purge_expired_deletes_only_expired_rows_and_counts_them(
        self, store: Store, clock: FakeClock
    ) -> None:
        now = clock()
        await store.create_answer(make_answer("old", expires_at=now + 10))
        await store.create_answer(make_answer("young", expires_at=now + 100))
        await store.create_answer(make_answer("kept"))
        await store.claim_message("msg-old", "old", ttl=10)
        await store.claim_message("msg-young", "young", ttl=100)
        await store.kv_set("old", "x", ttl=10)
        await store.kv_set("young", "x", ttl=100)
        await store.kv_set("kept", "x")
        dead = store.lock("dead", ttl=10)
        await dead.__aenter__()
        clock.advance(10)

        assert await store.purge_expired() == 4
        assert await store.purge_expired() == 0

        assert await store.get_answer("old") is None
        assert {r.id for r in await store.conversation_answers(CONV)} == {"young", "kept"}
        assert await store.claim_message("msg-young", "other", ttl=10) == "young"
        assert await store.kv_get("young") == "x"
        assert await store.kv_get("kept") == "x"
        await dead.__aexit__(None, None, None)


class TestSharedStoreContract:
    """Backends whose data two store objects share, as two processes (or a restart) do."""

    async def test_everything_survives_a_restart(self, shared_backend: Backend) -> None:
        store = await shared_backend.open()
        await store.claim_message("msg-a1", "a1", ttl=60)
        created = await store.create_answer(
            make_answer("a1", status=AnswerStatus.RUNNING, meta={"images": "u"})
        )
        await store.append_answer_text("a1", "partial")
        await store.mark_delivered("a1", 3)
        turns = make_turns(4)
        await store.append_turns(CONV, turns[:2])
        await store.reset_context(CONV)
        await store.append_turns(CONV, turns[2:])
        await store.kv_set("token", "abc", ttl=60)
        await store.incr("count", ttl=60)
        before = await store.get_answer("a1")

        store = await shared_backend.restart(store)

        assert await store.get_answer("a1") == before
        assert before is not None
        assert (before.text, before.delivered_upto, before.meta) == ("partial", 3, {"images": "u"})
        assert await store.get_answer_by_token("token-a1") == before
        assert await store.claim_message("msg-a1", "again", ttl=60) == "a1"
        assert await store.history(CONV) == turns
        assert await store.recent_turns(CONV, 10) == turns[2:]
        assert await store.kv_get("token") == "abc"
        assert await store.incr("count", ttl=60) == 2
        assert (await store.create_answer(make_answer("a2"))).seq > created.seq

    async def test_claim_is_atomic_across_store_objects(self, shared_backend: Backend) -> None:
        stores = [await shared_backend.open(), await shared_backend.open()]
        results = await asyncio.gather(
            *(stores[i % 2].claim_message("msg-1", f"answer-{i}", ttl=60) for i in range(50))
        )
        winners = [i for i, result in enumerate(results) if result is None]
        assert len(winners) == 1
        assert {r for r in results if r is not None} == {f"answer-{winners[0]}"}

    async def test_lock_excludes_across_store_objects(self, shared_backend: Backend) -> None:
        first, second = await shared_backend.open(), await shared_backend.open()
        events: list[str] = []

        async def enter_second() -> None:
            async with second.lock("token-refresh"):
                events.append("second in")

        async with first.lock("token-refresh"):
            events.append("first in")
            waiter = asyncio.create_task(enter_second())
            await asyncio.sleep(SETTLE)
            events.append("first out")
        async with asyncio.timeout(WITHIN):
            await waiter
        assert events == ["first in", "first out", "second in"]

    async def test_wait_answer_sees_a_finish_made_through_another_store_object(
        self, shared_backend: Backend
    ) -> None:
        writer, reader = await shared_backend.open(), await shared_backend.open()
        await writer.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        waiter = asyncio.create_task(reader.wait_answer("a1", timeout=3600))
        await asyncio.sleep(SETTLE)
        assert not waiter.done()
        await writer.update_answer("a1", status=AnswerStatus.DONE, text="final")
        async with asyncio.timeout(WITHIN):
            record = await waiter
        assert record is not None and record.text == "final" and record.finished

    async def test_watch_answer_sees_text_appended_through_another_store_object(
        self, shared_backend: Backend
    ) -> None:
        writer, reader = await shared_backend.open(), await shared_backend.open()
        await writer.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        watch = reader.watch_answer("a1")
        async with asyncio.timeout(WITHIN):
            assert (await anext(watch)).text == ""
            await writer.append_answer_text("a1", "chunk")
            assert (await anext(watch)).text == "chunk"
            await writer.update_answer("a1", status=AnswerStatus.DONE)
            assert (await anext(watch)).finished
            with pytest.raises(StopAsyncIteration):
                await anext(watch)
