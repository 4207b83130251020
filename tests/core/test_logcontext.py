"""log_scope: the fields log lines carry, bound for a block and restored after it."""

from __future__ import annotations

import pytest

from chatgate.core.logcontext import current, log_scope


def test_a_scope_binds_its_fields_for_the_block_and_restores_the_outer_ones() -> None:
    with log_scope(channel="wechat_mp", message_id="m1"):
        with log_scope(message_id="m2", answer_id="a1"):
            assert dict(current()) == {
                "channel": "wechat_mp",
                "message_id": "m2",
                "answer_id": "a1",
            }
        assert dict(current()) == {"channel": "wechat_mp", "message_id": "m1"}
    assert dict(current()) == {}


def test_a_nested_scope_binding_the_same_values_changes_nothing_and_restores_nothing() -> None:
    with log_scope(channel="wechat_mp", message_id="m1"):
        outer = current()
        with log_scope(channel="wechat_mp", message_id="m1", conversation=None):
            assert current() is outer
        assert current() is outer
    assert dict(current()) == {}


def test_none_values_are_skipped_and_unknown_fields_refused() -> None:
    with log_scope(channel="dingtalk", answer_id=None):
        assert dict(current()) == {"channel": "dingtalk"}
    with pytest.raises(ValueError, match="unknown"):
        log_scope(user="u1")


def test_a_scope_is_restored_when_its_block_raises() -> None:
    with pytest.raises(RuntimeError), log_scope(channel="wechat_mp"):
        raise RuntimeError
    assert dict(current()) == {}
