"""Push settings: the mode follows the credentials unless set, and bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate.config import load_settings
from chatgate.errors import ConfigError

CREDENTIALS = {"CHATGATE_WECHAT_APPID": "wx0123", "CHATGATE_WECHAT_SECRET": "s3cret"}


def test_mode_is_passive_without_credentials_and_hybrid_with_them() -> None:
    assert load_settings(environ={}).wechat_mode == "passive"
    assert load_settings(environ={"CHATGATE_WECHAT_APPID": "wx0123"}).wechat_mode == "passive"
    assert load_settings(environ=CREDENTIALS).wechat_mode == "hybrid"


@pytest.mark.parametrize("mode", ["passive", "push", "hybrid"])
def test_an_explicit_mode_wins(mode: str) -> None:
    settings = load_settings(environ={**CREDENTIALS, "CHATGATE_WECHAT_MODE": mode})
    assert settings.wechat_mode == mode


def test_mode_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[wechat]\nappid = "wx1"\nsecret = "s"\nmode = "push"\n')
    assert load_settings(path, environ={}).wechat_mode == "push"


@pytest.mark.parametrize("mode", ["push", "hybrid"])
def test_push_modes_need_appid_and_secret(mode: str) -> None:
    with pytest.raises(ConfigError, match="CHATGATE_WECHAT_MODE") as caught:
        load_settings(environ={"CHATGATE_WECHAT_MODE": mode, "CHATGATE_WECHAT_APPID": "wx1"})
    assert "CHATGATE_WECHAT_SECRET" in str(caught.value)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CHATGATE_WECHAT_MODE": "fast"}, "CHATGATE_WECHAT_MODE"),
        ({"CHATGATE_WECHAT_API_BASE": "api.weixin.qq.com"}, "CHATGATE_WECHAT_API_BASE"),
        ({"CHATGATE_WECHAT_TOKEN_SOURCE": "forced"}, "CHATGATE_WECHAT_TOKEN_SOURCE"),
        ({"CHATGATE_WECHAT_PUSH_MAX_BYTES": "100"}, "CHATGATE_WECHAT_PUSH_MAX_BYTES"),
        ({"CHATGATE_WECHAT_PUSH_MAX_MESSAGES": "0"}, "CHATGATE_WECHAT_PUSH_MAX_MESSAGES"),
    ],
)
def test_invalid_push_settings_name_their_key(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ={**CREDENTIALS, **env})


def test_push_defaults() -> None:
    settings = load_settings(environ={"CHATGATE_WECHAT_API_BASE": "http://127.0.0.1:9/"})
    assert settings.wechat_api_base == "http://127.0.0.1:9"
    defaults = load_settings(environ={})
    assert defaults.wechat_api_base == "https://api.weixin.qq.com"
    assert defaults.wechat_token_source == "stable"
    assert (defaults.wechat_push_max_bytes, defaults.wechat_push_max_messages) == (2048, 5)
