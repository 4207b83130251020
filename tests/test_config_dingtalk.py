"""DingTalk settings: on with both credentials, refused with one, validated where it matters."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate.config import load_settings
from chatgate.errors import ConfigError


def test_dingtalk_is_off_by_default_with_stream_mode_and_documented_defaults() -> None:
    settings = load_settings(environ={})
    assert not settings.dingtalk_enabled
    assert settings.dingtalk_mode == "stream"
    assert settings.dingtalk_api_base == "https://api.dingtalk.com"
    assert settings.dingtalk_path == "/dingtalk"
    assert settings.dingtalk_stream_interval == 1.0
    assert settings.dingtalk_card_template == ""


def test_both_credentials_turn_it_on_and_the_secret_stays_secret() -> None:
    env = {
        "CHATGATE_DINGTALK_CLIENT_ID": "dingabc",
        "CHATGATE_DINGTALK_CLIENT_SECRET": "very-secret",
        "CHATGATE_DINGTALK_MODE": "http",
        "CHATGATE_DINGTALK_API_BASE": "http://127.0.0.1:9/",
    }
    settings = load_settings(environ=env)
    assert settings.dingtalk_enabled and settings.dingtalk_mode == "http"
    assert settings.dingtalk_api_base == "http://127.0.0.1:9"
    assert "very-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CHATGATE_DINGTALK_CLIENT_ID": "dingabc"}, "CHATGATE_DINGTALK_CLIENT_SECRET"),
        ({"CHATGATE_DINGTALK_CLIENT_SECRET": "s"}, "CHATGATE_DINGTALK_CLIENT_SECRET"),
        ({"CHATGATE_DINGTALK_MODE": "websocket"}, "CHATGATE_DINGTALK_MODE"),
        ({"CHATGATE_DINGTALK_API_BASE": "api.dingtalk.com"}, "CHATGATE_DINGTALK_API_BASE"),
        ({"CHATGATE_DINGTALK_PATH": "dingtalk"}, "CHATGATE_DINGTALK_PATH"),
        ({"CHATGATE_DINGTALK_STREAM_INTERVAL": "0"}, "CHATGATE_DINGTALK_STREAM_INTERVAL"),
        ({"CHATGATE_DINGTALK_MAX_AGE": "-1"}, "CHATGATE_DINGTALK_MAX_AGE"),
    ],
)
def test_invalid_dingtalk_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ=env)


def test_the_toml_section_maps_onto_the_same_settings(tmp_path: Path) -> None:
    path = tmp_path / "chatgate.toml"
    path.write_text(
        '[dingtalk]\nclient_id = "dingabc"\nclient_secret = "s"\ncard_template = "tpl.schema"\n',
        encoding="utf-8",
    )
    settings = load_settings(path, environ={})
    assert settings.dingtalk_enabled and settings.dingtalk_card_template == "tpl.schema"
