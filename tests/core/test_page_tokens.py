"""Page tokens: 128 random bits each after the time, URL-safe, never handed out twice, not even
across fork; tokens made close together share a prefix (the store's index of them stays local)."""

from __future__ import annotations

import base64
import os
import re
import time

from chatgate.core.dispatcher import new_page_token
from chatgate.core.links import token_shaped

TOKEN = r"[A-Za-z0-9_-]{32}"


def _decoded(token: str) -> bytes:
    return base64.urlsafe_b64decode(token)


def test_page_tokens_are_distinct_url_safe_and_carry_128_random_bits_after_the_time() -> None:
    before = time.time_ns()
    tokens = [new_page_token() for _ in range(3000)]  # several pools' worth
    after = time.time_ns()
    assert len(set(tokens)) == len(tokens)
    assert all(re.fullmatch(TOKEN, t) for t in tokens)
    decoded = [_decoded(t) for t in tokens]
    assert all(len(d) == 24 for d in decoded)
    assert all(before <= int.from_bytes(d[:8], "big") <= after for d in decoded)
    # The random parts alone are all different: the time is not what keeps tokens apart.
    assert len({d[8:] for d in decoded}) == len(decoded)


def test_tokens_made_close_together_share_a_prefix_and_stay_token_shaped() -> None:
    first, second = new_page_token(), new_page_token()
    assert first[:6] == second[:6]
    assert token_shaped(first)
    assert token_shaped("A" * 22)  # a history token, or an answer token from before the time
    assert not token_shaped("A" * 27)


def test_a_forked_child_does_not_hand_out_the_tokens_its_parent_has_yet_to() -> None:
    new_page_token()  # the pool is started: the next tokens sit in this process's memory
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.close(reading)
        os.write(writing, new_page_token().encode())
        os._exit(0)
    os.close(writing)
    os.waitpid(child, 0)
    with os.fdopen(reading, "rb") as pipe:
        childs = pipe.read().decode()
    assert re.fullmatch(TOKEN, childs)
    assert _decoded(childs)[8:] != _decoded(new_page_token())[8:]
