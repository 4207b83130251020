"""The command line: help for every command, and configuration errors reported clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest


def chatgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "chatgate", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["serve", "demo", "simulate"])
def test_every_command_has_help(command: str) -> None:
    result = chatgate(command, "--help")
    assert result.returncode == 0
    assert "usage: chatgate " + command in result.stdout


def test_serve_with_a_bad_setting_exits_2_naming_it() -> None:
    result = chatgate("serve", env={"CHATGATE_PORT": "not-a-port"})
    assert result.returncode == 2
    assert "CHATGATE_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_a_typo_in_the_config_file_exits_2(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    path = tmp_path / "c.toml"
    path.write_text('[wechat]\ntokn = "x"\n', encoding="utf-8")
    result = chatgate("serve", "--config", str(path))
    assert result.returncode == 2 and "[wechat] tokn" in result.stderr
