"""``chatgate check``: problems named clearly, WeChat's console fields spelled out, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chatgate.app.check import check
from chatgate.cli import main

GOOD_TOKEN = "chatgate2026"
GOOD_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "CHATGATE_STORE": f"sqlite:///{tmp_path / 'gw.db'}",
        "CHATGATE_LLM_API_KEY": "sk-test",
        "CHATGATE_PUBLIC_URL": "https://bot.example.com",
    }
    env.update(extra)
    return env


def problems(report_text: str) -> list[str]:
    return [line for line in report_text.splitlines() if line.startswith("  [XX]")]


def test_a_missing_token_is_a_problem_that_says_what_to_set(tmp_path: Path) -> None:
    report = check(environ=base_env(tmp_path))
    text = report.render()
    assert not report.ok
    [problem] = problems(text)
    assert "CHATGATE_WECHAT_TOKEN is not set" in problem
    assert "3-32 letters and digits" in text and "令牌" in text


def test_a_malformed_aes_key_is_named_with_its_length_and_odd_characters_but_not_shown(
    tmp_path: Path,
) -> None:
    bad_key = GOOD_KEY[:40] + "=="  # 42 characters, as pasted with base64 padding
    env = base_env(tmp_path, CHATGATE_WECHAT_TOKEN=GOOD_TOKEN, CHATGATE_WECHAT_AES_KEY=bad_key)
    report = check(environ=env)
    text = report.render()
    assert not report.ok
    assert "CHATGATE_WECHAT_AES_KEY is not a valid EncodingAESKey" in text
    assert "has 42 characters, including '='" in text
    assert "EncodingAESKey (消息加解密密钥): invalid" in text
    assert bad_key not in text and GOOD_KEY[:20] not in text
    # The rest of the configuration is still reported.
    assert "URL (服务器地址): https://bot.example.com/wechat" in text


def test_a_malformed_aes_key_in_a_config_file_is_explained_too(tmp_path: Path) -> None:
    config = tmp_path / "chatgate.toml"
    config.write_text(f'[wechat]\ntoken = "{GOOD_TOKEN}"\naes_key = "short key"\n')
    text = check(config, environ=base_env(tmp_path)).render()
    assert "it has 9 characters, including ' '" in text


def test_a_good_configuration_lists_what_the_console_needs(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        CHATGATE_WECHAT_TOKEN=GOOD_TOKEN,
        CHATGATE_WECHAT_AES_KEY=GOOD_KEY,
        CHATGATE_WECHAT_APPID="wx0123456789abcdef",
    )
    report = check(environ=env)
    text = report.render()
    assert report.ok, text
    assert "URL (服务器地址): https://bot.example.com/wechat" in text
    assert f"CHATGATE_WECHAT_TOKEN ({len(GOOD_TOKEN)} characters)" in text
    assert "安全模式" in text
    assert "Delivery: passive" in text and "IP whitelist (IP白名单): not needed" in text
    for secret in (GOOD_TOKEN, GOOD_KEY, "sk-test"):
        assert secret not in text


def test_push_modes_need_the_ip_whitelist(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        CHATGATE_WECHAT_TOKEN=GOOD_TOKEN,
        CHATGATE_WECHAT_APPID="wx0123456789abcdef",
        CHATGATE_WECHAT_SECRET="an-app-secret-value",
    )
    text = check(environ=env).render()
    assert "Delivery: hybrid, because AppID and AppSecret are set" in text
    assert "[!!] IP whitelist (IP白名单): add this server's public outbound IP" in text
    assert "40164" in text


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"CHATGATE_WECHAT_TOKEN": "has-dash"}, "including '-'"),
        ({"CHATGATE_PUBLIC_URL": "https://bot.example.com:8443"}, "only calls ports 80 and 443"),
        ({"CHATGATE_STORE": "sqlite:////nonexistent/dir/gw.db"}, "does not exist"),
        ({"CHATGATE_LLM_API_KEY": ""}, "OpenAI will refuse every call"),
        ({"CHATGATE_WECHAT_AES_KEY": GOOD_KEY}, "CHATGATE_WECHAT_APPID is not set"),
        ({"CHATGATE_WECHAT_TOKEN_TYPO": "x"}, "unknown environment variable"),
    ],
    ids=["token-chars", "port", "store-folder", "openai-key", "aes-without-appid", "typo"],
)
def test_each_problem_is_reported(tmp_path: Path, extra: dict[str, str], expected: str) -> None:
    env = base_env(tmp_path, CHATGATE_WECHAT_TOKEN=GOOD_TOKEN)
    env.update(extra)
    report = check(environ=env)
    assert not report.ok
    assert any(expected in p for p in problems(report.render())), report.render()


def test_the_command_exits_1_on_problems_and_0_when_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in base_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CHATGATE_WECHAT_TOKEN", raising=False)
    assert main(["check"]) == 1
    assert "CHATGATE_WECHAT_TOKEN is not set" in capsys.readouterr().out
    monkeypatch.setenv("CHATGATE_WECHAT_TOKEN", GOOD_TOKEN)
    assert main(["check"]) == 0
    assert "configuration OK" in capsys.readouterr().out


def test_check_runs_as_a_command_without_starting_a_server(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **base_env(tmp_path, CHATGATE_WECHAT_TOKEN=GOOD_TOKEN)}
    done = subprocess.run(
        [sys.executable, "-m", "chatgate", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("chatgate check: configuration OK")
    assert not (tmp_path / "gw.db").exists()  # the store was never opened
