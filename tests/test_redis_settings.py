"""Redis settings: the store URL, the key prefix and the claim delay are checked at load."""

from __future__ import annotations

import pytest

from chatgate.config import load_settings
from chatgate.errors import ConfigError


def test_a_redis_store_url_loads_with_its_prefix_and_claim_delay() -> None:
    settings = load_settings(
        environ={
            "CHATGATE_STORE": "redis://:pw@redis.internal:6380/3",
            "CHATGATE_REDIS_PREFIX": "bot-a:",
            "CHATGATE_JOB_CLAIM_AFTER": "15",
        }
    )
    assert settings.store == "redis://:pw@redis.internal:6380/3"
    assert (settings.redis_prefix, settings.job_claim_after) == ("bot-a:", 15.0)


def test_redis_defaults() -> None:
    settings = load_settings(environ={})
    assert (settings.redis_prefix, settings.job_claim_after) == ("chatgate:", 60.0)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CHATGATE_STORE": "redis://:hunter2@/0"}, "CHATGATE_STORE"),
        ({"CHATGATE_STORE": "redis://:hunter2@host:port"}, "CHATGATE_STORE"),
        ({"CHATGATE_STORE": "redis://:hunter2@host/x"}, "CHATGATE_STORE"),
        ({"CHATGATE_STORE": "mysql://:hunter2@host/0"}, "CHATGATE_STORE"),
        ({"CHATGATE_REDIS_PREFIX": ""}, "CHATGATE_REDIS_PREFIX"),
        ({"CHATGATE_REDIS_PREFIX": "two words"}, "CHATGATE_REDIS_PREFIX"),
        ({"CHATGATE_JOB_CLAIM_AFTER": "0"}, "CHATGATE_JOB_CLAIM_AFTER"),
    ],
)
def test_a_bad_redis_setting_names_the_key_and_hides_the_password(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        load_settings(environ=env)
    assert "hunter2" not in str(caught.value)
