"""Settings: one name per setting from env or TOML; typos and bad values fail at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate.config import load_settings
from chatgate.errors import ConfigError

AES = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chatgate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_documented_ones() -> None:
    s = load_settings(environ={})
    assert (s.host, s.port, s.store) == ("127.0.0.1", 8000, "sqlite:///chatgate.db")
    assert (s.llm_timeout, s.context_max_turns, s.context_max_tokens) == (120.0, 20, 3000)
    assert (s.wechat_path, s.wechat_reply_deadline, s.answer_ttl) == ("/wechat", 4.5, 86400.0)
    assert s.public_url is None and not s.wechat_enabled


def test_toml_section_key_is_the_same_setting_as_the_env_variable(tmp_path: Path) -> None:
    path = write(tmp_path, '[wechat]\ntoken = "from-file"\n[llm]\nmodel = "qwen"\nport = 1\n')
    with pytest.raises(ConfigError):  # `port` inside [llm] is llm_port: unknown
        load_settings(path, environ={})
    path = write(tmp_path, 'port = 9000\n[wechat]\ntoken = "from-file"\n[llm]\nmodel = "qwen"\n')
    s = load_settings(path, environ={})
    assert s.wechat_token is not None and s.wechat_token.get_secret_value() == "from-file"
    assert (s.llm_model, s.port) == ("qwen", 9000)
    env = load_settings(environ={"CHATGATE_WECHAT_TOKEN": "from-env"})
    assert env.wechat_token is not None and env.wechat_token.get_secret_value() == "from-env"


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[llm]\nmodel = "file-model"\n')
    s = load_settings(path, environ={"CHATGATE_LLM_MODEL": "env-model"})
    assert s.llm_model == "env-model"


def test_unknown_toml_key_fails_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, '[wechat]\ntokn = "x"\n')
    with pytest.raises(ConfigError, match=r"\[wechat\] tokn"):
        load_settings(path, environ={})


def test_unknown_env_variable_fails_naming_it() -> None:
    with pytest.raises(ConfigError, match="CHATGATE_WECHAT_TOKNE"):
        load_settings(environ={"CHATGATE_WECHAT_TOKNE": "x"})


def test_test_suite_variables_are_not_settings() -> None:
    load_settings(environ={"CHATGATE_TEST_REDIS_URL": "redis://127.0.0.1:1/0"})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CHATGATE_PORT": "eighty"}, "CHATGATE_PORT"),
        ({"CHATGATE_WECHAT_AES_KEY": "short"}, "CHATGATE_WECHAT_AES_KEY"),
        ({"CHATGATE_PUBLIC_URL": "example.com"}, "CHATGATE_PUBLIC_URL"),
        ({"CHATGATE_STORE": "mongodb://x"}, "CHATGATE_STORE"),
        ({"CHATGATE_WECHAT_REPLY_DEADLINE": "6"}, "CHATGATE_WECHAT_REPLY_DEADLINE"),
        ({"CHATGATE_LLM_PROVIDER": "gpt"}, "CHATGATE_LLM_PROVIDER"),
    ],
)
def test_invalid_value_fails_naming_the_key(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ=env)


def test_invalid_value_in_file_names_the_toml_key_too(tmp_path: Path) -> None:
    path = write(tmp_path, "[wechat]\nreply_deadline = 9\n")
    with pytest.raises(ConfigError, match=r"\[wechat\] reply_deadline"):
        load_settings(path, environ={})


def test_secrets_never_show_in_repr_or_errors() -> None:
    s = load_settings(
        environ={
            "CHATGATE_WECHAT_TOKEN": "tok-SECRET-1",
            "CHATGATE_WECHAT_SECRET": "app-SECRET-2",
            "CHATGATE_LLM_API_KEY": "sk-SECRET-3",
            "CHATGATE_WECHAT_AES_KEY": AES,
        }
    )
    shown = repr(s) + str(s)
    for secret in ("tok-SECRET-1", "app-SECRET-2", "sk-SECRET-3", AES):
        assert secret not in shown
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"CHATGATE_WECHAT_AES_KEY": "bad-SECRET-key"})
    assert "bad-SECRET-key" not in str(caught.value)


def test_public_url_loses_its_trailing_slash() -> None:
    s = load_settings(environ={"CHATGATE_PUBLIC_URL": "https://bot.example.com/"})
    assert s.public_url == "https://bot.example.com"


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_loading_with_an_explicit_environ_leaves_the_process_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    monkeypatch.setenv("CHATGATE_PORT", "1234")
    assert load_settings(environ={}).port == 8000
    assert os.environ["CHATGATE_PORT"] == "1234"
    assert load_settings().port == 1234


def test_conversation_feature_defaults() -> None:
    s = load_settings(environ={})
    assert (s.command_prefix, s.session_mode, s.session_ttl) == ("/", "always", 300.0)
    assert s.welcome_text is None and s.rules_file is None and s.blocklist_file is None
    assert not s.llm_vision and s.rate_limit == "" and s.rate_limits == ()


def test_rate_limit_is_parsed_shortest_window_first() -> None:
    s = load_settings(environ={"CHATGATE_RATE_LIMIT": "200/day, 20/min,5/10 min，1000/7d"})
    assert s.rate_limits == ((20, 60.0), (5, 600.0), (200, 86400.0), (1000, 604800.0))
    assert load_settings(environ={"CHATGATE_RATE_LIMIT": "3/小时"}).rate_limits == ((3, 3600.0),)


@pytest.mark.parametrize("value", ["20/fortnight", "0/min", "20", "min/20", "20/min,,x"])
def test_a_bad_rate_limit_names_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match="CHATGATE_RATE_LIMIT"):
        load_settings(environ={"CHATGATE_RATE_LIMIT": value})


@pytest.mark.parametrize("prefix", ["", "a", "/ ", "////", "1"])
def test_a_command_prefix_must_be_short_punctuation(prefix: str) -> None:
    with pytest.raises(ConfigError, match="CHATGATE_COMMAND_PREFIX"):
        load_settings(environ={"CHATGATE_COMMAND_PREFIX": prefix})


def test_rules_and_blocklist_files_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CHATGATE_RULES_FILE"):
        load_settings(environ={"CHATGATE_RULES_FILE": str(tmp_path / "missing.toml")})
    with pytest.raises(ConfigError, match="CHATGATE_BLOCKLIST_FILE"):
        load_settings(environ={"CHATGATE_BLOCKLIST_FILE": str(tmp_path)})  # a directory
    rules = tmp_path / "rules.toml"
    rules.write_text("", encoding="utf-8")
    assert load_settings(environ={"CHATGATE_RULES_FILE": str(rules)}).rules_file == rules
    assert load_settings(environ={"CHATGATE_RULES_FILE": ""}).rules_file is None


def test_feature_settings_from_toml_sections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[session]\nmode = "command"\nttl = 600\n[llm]\nvision = true\n[command]\nprefix = "#"\n',
    )
    s = load_settings(path, environ={})
    assert (s.session_mode, s.session_ttl, s.llm_vision, s.command_prefix) == (
        "command",
        600.0,
        True,
        "#",
    )
    with pytest.raises(ConfigError, match="CHATGATE_SESSION_MODE"):
        load_settings(environ={"CHATGATE_SESSION_MODE": "sometimes"})
