"""The retry policy's pauses and Retry-After parsing."""

from __future__ import annotations

import email.utils

import pytest

from chatgate.providers.retry import RetryPolicy, parse_retry_after


def test_backoff_doubles_per_retry_until_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=0.25)
    delays = [policy.delay(n, rand=lambda: 0.0) for n in range(5)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_shortens_the_backoff_by_at_most_its_fraction() -> None:
    policy = RetryPolicy(base_delay=1.0, jitter=0.25)
    assert policy.delay(0, rand=lambda: 1.0) == pytest.approx(0.75)
    assert policy.delay(0, rand=lambda: 0.5) == pytest.approx(0.875)


def test_retry_after_replaces_the_backoff() -> None:
    policy = RetryPolicy(base_delay=0.5)
    assert policy.delay(0, retry_after=3.0, rand=lambda: 0.0) == 3.0
    assert policy.delay(0, retry_after=0.0, rand=lambda: 0.0) == 0.0


def test_retry_after_is_capped() -> None:
    policy = RetryPolicy(max_retry_after=5.0)
    assert policy.delay(0, retry_after=3600.0) == 5.0


def test_unusable_retry_after_falls_back_to_backoff() -> None:
    policy = RetryPolicy(base_delay=0.5)
    assert policy.delay(1, retry_after=float("nan"), rand=lambda: 0.0) == 1.0
    assert policy.delay(1, retry_after=-2.0, rand=lambda: 0.0) == 1.0


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.5)


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5


def test_retry_after_ms_is_preferred() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25


def test_retry_after_as_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 12, usegmt=True)
    assert parse_retry_after({"retry-after": header}, now=lambda: now) == pytest.approx(12.0)


def test_retry_after_date_in_the_past_means_now() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now - 60, usegmt=True)
    assert parse_retry_after({"retry-after": header}, now=lambda: now) == 0.0


@pytest.mark.parametrize("headers", [{}, {"retry-after": "soon"}, {"retry-after": "-3"}])
def test_missing_or_unreadable_retry_after_is_none(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers) is None
