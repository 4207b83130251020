"""Page tokens: 128 random bits each, URL-safe, never handed out twice, not even across fork."""

from __future__ import annotations

import base64
import os
import re

from chatgate.core.dispatcher import new_page_token


def test_page_tokens_are_distinct_url_safe_and_carry_128_bits() -> None:
    tokens = [new_page_token() for _ in range(3000)]  # several pools' worth
    assert len(set(tokens)) == len(tokens)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", t) for t in tokens)
    assert all(len(base64.urlsafe_b64decode(t + "==")) == 16 for t in tokens)


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
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", childs)
    assert childs != new_page_token()
