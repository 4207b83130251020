"""Provider settings: Dify's required server and key, retries, the cap and the cache, as wired."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.app.wiring import make_cache, make_provider
from chatgate.config import load_settings
from chatgate.errors import ConfigError
from chatgate.providers.dify import DifyProvider
from chatgate.providers.openai_compat import OpenAICompatProvider
from chatgate.store.memory import MemoryStore

DIFY = {"CHATGATE_LLM_PROVIDER": "dify", "CHATGATE_LLM_BASE_URL": "https://api.dify.ai/v1"}


def test_defaults_retry_twice_cap_at_eight_and_cache_nothing() -> None:
    s = load_settings(environ={})
    assert (s.llm_retries, s.llm_concurrency, s.cache_ttl) == (2, 32, 0.0)


def test_dify_without_its_key_fails_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"CHATGATE_LLM_API_KEY.*Dify app's API key"):
        load_settings(environ=DIFY)


def test_dify_left_on_the_openai_url_fails_naming_the_url() -> None:
    with pytest.raises(ConfigError, match=r"CHATGATE_LLM_BASE_URL.*Dify API server"):
        load_settings(environ={"CHATGATE_LLM_PROVIDER": "dify", "CHATGATE_LLM_API_KEY": "app-x"})


@pytest.mark.parametrize(
    ("name", "value"),
    [("LLM_RETRIES", "-1"), ("LLM_RETRIES", "11"), ("LLM_CONCURRENCY", "0"), ("CACHE_TTL", "-5")],
)
def test_out_of_range_values_fail_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"CHATGATE_{name}"):
        load_settings(environ={f"CHATGATE_{name}": value})


async def test_dify_is_wired_with_the_configured_retries() -> None:
    s = load_settings(
        environ={**DIFY, "CHATGATE_LLM_API_KEY": "app-x", "CHATGATE_LLM_RETRIES": "4"}
    )
    provider = make_provider(s)
    assert isinstance(provider, DifyProvider)
    assert provider.url == "https://api.dify.ai/v1/chat-messages"
    assert provider.retry_policy.max_retries == 4
    await provider.aclose()


async def test_openai_is_wired_with_the_configured_retries() -> None:
    provider = make_provider(load_settings(environ={"CHATGATE_LLM_RETRIES": "0"}))
    assert isinstance(provider, OpenAICompatProvider)
    assert provider.retry_policy.max_retries == 0
    await provider.aclose()


def cache_key(**settings: Any) -> str:
    cache = make_cache(load_settings(environ={}, cache_ttl=60, **settings), MemoryStore())
    assert cache is not None
    return cache.key("同一个问题")


def test_no_cache_without_a_ttl() -> None:
    assert make_cache(load_settings(environ={}), MemoryStore()) is None


def test_the_cache_key_changes_with_model_prompt_server_and_dify_app() -> None:
    base = cache_key()
    assert cache_key() == base
    assert cache_key(llm_model="other") != base
    assert cache_key(llm_system_prompt="你是诗人。") != base
    assert cache_key(llm_base_url="https://api.deepseek.com/v1") != base
    dify = {"llm_provider": "dify", "llm_base_url": "https://api.dify.ai/v1"}
    one, two = cache_key(**dify, llm_api_key="app-one"), cache_key(**dify, llm_api_key="app-two")
    assert one != two and "app-one" not in one
    # Dify sends no model or system prompt: they cannot change its answers.
    assert cache_key(**dify, llm_api_key="app-one", llm_model="x") == one
