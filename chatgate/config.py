"""Settings: one name per setting, from ``CHATGATE_*`` environment variables or a TOML file.

A TOML key ``[wechat] token`` is the setting ``wechat_token``, the same as the environment
variable ``CHATGATE_WECHAT_TOKEN``; top-level TOML keys map to ``CHATGATE_<KEY>``. The
environment wins over the file. Unknown keys and invalid values raise ``ConfigError`` naming
the key, so a typo fails at start instead of being silently ignored. Secrets are ``SecretStr``:
they never show in ``repr``, logs or error messages.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from chatgate.errors import ConfigError

ENV_PREFIX = "CHATGATE_"
# Variables under this prefix belong to the test suite, not to the gateway.
_IGNORED_ENV_PREFIXES = ("CHATGATE_TEST_",)

OPENAI_BASE_URL = "https://api.openai.com/v1"

_AES_KEY_RE = re.compile(r"^[A-Za-z0-9]{43}$")

REDIS_SCHEMES = ("redis://", "rediss://")


def redis_url_problem(url: str) -> str | None:
    """What is wrong with a ``redis://[:PASSWORD@]HOST[:PORT][/DB]`` URL, or ``None``.

    The message never repeats the URL: it may hold a password.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return "a Redis URL starts with redis:// or rediss://"
    if not parts.hostname:
        return "a Redis URL names a host: redis://HOST:PORT/DB"
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        return "the Redis port must be a number from 0 to 65535"
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        return "the Redis database after the host must be a number: redis://HOST:PORT/0"
    return None


class Settings(BaseSettings):
    """Every setting of the gateway, with its default."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        case_sensitive=False,
        validate_default=True,
    )

    # -- server --------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = None
    store: str = "sqlite:///chatgate.db"
    # Redis deployments: every key under this prefix; a dead worker's job is taken over
    # by another after this many seconds without a sign of life.
    redis_prefix: str = Field("chatgate:", min_length=1, max_length=64, pattern=r"^\S+$")
    job_claim_after: float = Field(60.0, ge=1, le=3600)
    answer_ttl: float = Field(86400.0, gt=0)
    max_jobs: int = Field(64, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    # Seconds SIGTERM leaves running answers to finish before they are left for the next start.
    shutdown_grace: float = Field(20.0, ge=0, le=3600)
    metrics_token: SecretStr | None = None

    # -- LLM -----------------------------------------------------------------------------
    llm_provider: Literal["openai", "dify", "fake"] = "openai"
    llm_base_url: str = OPENAI_BASE_URL
    llm_api_key: SecretStr = SecretStr("")
    llm_model: str = "gpt-4o-mini"
    llm_system_prompt: str = "你是一个乐于助人的助手，回答简洁、准确。"
    llm_timeout: float = Field(120.0, gt=0)
    llm_apology: str = "抱歉，AI 暂时无法回答，请稍后再试。"
    llm_retries: int = Field(2, ge=0, le=10)
    llm_concurrency: int = Field(32, ge=1)
    cache_ttl: float = Field(0.0, ge=0)
    context_max_turns: int = Field(20, ge=0)
    context_max_tokens: int = Field(3000, ge=0)

    # -- conversation features (commands, sessions, rules, media, moderation, limits) ------
    command_prefix: str = "/"
    session_mode: Literal["always", "command"] = "always"
    session_ttl: float = Field(300.0, gt=0)
    welcome_text: str | None = None
    rules_file: Path | None = None
    blocklist_file: Path | None = None
    llm_vision: bool = False
    rate_limit: str = ""

    # -- WeChat Official Account -----------------------------------------------------------
    wechat_token: SecretStr | None = None
    wechat_appid: str = ""
    wechat_secret: SecretStr | None = None
    wechat_aes_key: SecretStr | None = None
    # Unset: hybrid when AppID and AppSecret are set (the customer-service API needs both),
    # else passive. Never None once loaded.
    wechat_mode: Literal["passive", "push", "hybrid"] | None = None
    wechat_path: str = "/wechat"
    wechat_reply_deadline: float = Field(4.5, gt=0, lt=5)
    wechat_tries: int = Field(3, ge=1, le=10)
    wechat_passive_max_bytes: int = Field(2048, ge=256)
    wechat_max_body_bytes: int = Field(64 * 1024, ge=1024)
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_token_source: Literal["stable", "classic"] = "stable"
    wechat_push_max_bytes: int = Field(2048, ge=256)
    wechat_push_max_messages: int = Field(5, ge=1)

    # -- DingTalk robot --------------------------------------------------------------------
    dingtalk_mode: Literal["stream", "http"] = "stream"
    dingtalk_client_id: str = ""
    dingtalk_client_secret: SecretStr | None = None
    dingtalk_robot_code: str = ""
    dingtalk_api_base: str = "https://api.dingtalk.com"
    dingtalk_card_template: str = ""
    dingtalk_card_key: str = "content"
    dingtalk_stream_interval: float = Field(1.0, ge=0.1)
    dingtalk_path: str = "/dingtalk"
    dingtalk_max_age: float = Field(300.0, ge=0)

    @field_validator("public_url")
    @classmethod
    def _public_url_is_http(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must start with http:// or https:// and name a host")
        return value.rstrip("/")

    @field_validator("llm_base_url")
    @classmethod
    def _dify_needs_its_server(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("llm_provider") == "dify" and value == OPENAI_BASE_URL:
            raise ValueError("set it to your Dify API server, e.g. https://api.dify.ai/v1")
        return value

    @field_validator("llm_api_key")
    @classmethod
    def _dify_needs_a_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("llm_provider") == "dify" and not value.get_secret_value():
            raise ValueError("the Dify provider needs the Dify app's API key")
        return value

    @field_validator("metrics_token")
    @classmethod
    def _empty_metrics_token_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None or value.get_secret_value() == "" else value

    @field_validator("store")
    @classmethod
    def _store_url_known(cls, value: str) -> str:
        if value == "memory://" or value.startswith("sqlite:///"):
            return value
        if value.startswith(REDIS_SCHEMES):
            problem = redis_url_problem(value)
            if problem is not None:
                raise ValueError(problem)
            return value
        raise ValueError("must be memory://, sqlite:///PATH or redis://HOST:PORT/DB")

    @field_validator("wechat_aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if not _AES_KEY_RE.match(value.get_secret_value()):
            raise ValueError("EncodingAESKey must be 43 letters and digits")
        return value

    @field_validator("wechat_path")
    @classmethod
    def _path_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @field_validator("wechat_mode", mode="before")
    @classmethod
    def _wechat_mode_default(cls, value: object, info: ValidationInfo) -> object:
        if value not in (None, ""):
            return value
        return "hybrid" if _wechat_can_push(info.data) else "passive"

    @field_validator("wechat_mode")
    @classmethod
    def _wechat_push_needs_credentials(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value in ("push", "hybrid") and not _wechat_can_push(info.data):
            raise ValueError(
                f"{value} mode sends through the customer-service API: set "
                "CHATGATE_WECHAT_APPID and CHATGATE_WECHAT_SECRET, or use passive"
            )
        return value

    @field_validator("wechat_api_base")
    @classmethod
    def _wechat_api_base_is_http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must start with http:// or https:// and name a host")
        return value.rstrip("/")

    @field_validator("dingtalk_client_secret")
    @classmethod
    def _dingtalk_credentials_paired(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        secret = None if value is None or value.get_secret_value() == "" else value
        if bool(info.data.get("dingtalk_client_id")) != (secret is not None):
            raise ValueError("set both CHATGATE_DINGTALK_CLIENT_ID and _CLIENT_SECRET, or neither")
        return secret

    @field_validator("dingtalk_api_base")
    @classmethod
    def _dingtalk_api_base_is_http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must start with http:// or https:// and name a host")
        return value.rstrip("/")

    @field_validator("dingtalk_path")
    @classmethod
    def _dingtalk_path_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @field_validator("command_prefix")
    @classmethod
    def _prefix_is_punctuation(cls, value: str) -> str:
        if not 1 <= len(value) <= 3 or any(c.isalnum() or c.isspace() for c in value):
            raise ValueError(
                "must be 1 to 3 characters, none a letter, digit or space (e.g. / or #)"
            )
        return value

    @field_validator("rules_file", "blocklist_file", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("rules_file", "blocklist_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        parse_rate_limit(value)
        return value.strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the TOML file, which arrives as init values.
        return (env_settings, init_settings)

    @property
    def rate_limits(self) -> tuple[tuple[int, float], ...]:
        """``rate_limit`` parsed: (messages, per seconds) pairs, shortest window first."""
        return parse_rate_limit(self.rate_limit)

    @property
    def wechat_enabled(self) -> bool:
        return self.wechat_token is not None and self.wechat_token.get_secret_value() != ""

    @property
    def dingtalk_enabled(self) -> bool:
        return bool(self.dingtalk_client_id) and self.dingtalk_client_secret is not None


def _wechat_can_push(data: Mapping[str, Any]) -> bool:
    """Whether the already-validated fields hold an AppID and an AppSecret."""
    secret = data.get("wechat_secret")
    has_secret = isinstance(secret, SecretStr) and secret.get_secret_value() != ""
    return bool(data.get("wechat_appid")) and has_secret


def env_name(field: str) -> str:
    """The environment variable of a setting: ``wechat_token`` → ``CHATGATE_WECHAT_TOKEN``."""
    return ENV_PREFIX + field.upper()


def _flatten_toml(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                if isinstance(subvalue, dict):
                    raise ConfigError(f"{source}: [{key}.{sub}] nests too deep")
                flat[f"{key}_{sub}".lower()] = subvalue
        else:
            flat[key.lower()] = value
    return flat


def _toml_key(field: str, sections: Mapping[str, str]) -> str:
    return sections.get(field, field)


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build ``Settings`` from a TOML file, the environment and explicit overrides.

    Raises ``ConfigError`` naming the offending key for unknown keys or invalid values.
    """
    env = dict(os.environ if environ is None else environ)
    known = set(Settings.model_fields)
    values: dict[str, Any] = {}
    display: dict[str, str] = {}

    if config_file is not None:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for key, value in data.items():
            if isinstance(value, dict):
                for sub in value:
                    display[f"{key}_{sub}".lower()] = f"[{key}] {sub}"
            else:
                display[key.lower()] = key
        flat = _flatten_toml(data, str(path))
        unknown = sorted(set(flat) - known)
        if unknown:
            names = ", ".join(f"'{display[k]}'" for k in unknown)
            raise ConfigError(f"{path}: unknown setting {names}")
        values.update(flat)

    unknown_env = sorted(
        name
        for name in env
        if name.upper().startswith(ENV_PREFIX)
        and not name.upper().startswith(_IGNORED_ENV_PREFIXES)
        and name.upper()[len(ENV_PREFIX) :].lower() not in known
    )
    if unknown_env:
        raise ConfigError(f"unknown environment variable {', '.join(unknown_env)}")

    for key in overrides:
        if key not in known:
            raise ConfigError(f"unknown setting '{key}'")
    values.update(overrides)

    saved = os.environ.copy()
    try:
        if environ is not None:
            # pydantic-settings reads os.environ; give it exactly the mapping we were handed.
            os.environ.clear()
            os.environ.update(env)
        for key in overrides:
            os.environ.pop(env_name(key), None)
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            where = env_name(field)
            if field in display:
                where = f"{where} / '{display[field]}'"
            problems.append(f"{where}: {err['msg']}")
        raise ConfigError("invalid setting " + "; ".join(problems)) from None
    finally:
        if environ is not None or overrides:
            os.environ.clear()
            os.environ.update(saved)


_RATE_UNITS: Mapping[str, float] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds", "秒"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes", "分", "分钟"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours", "时", "小时"), 3600.0),
    **dict.fromkeys(("d", "day", "days", "天", "日"), 86400.0),
}
_RATE_PART = re.compile(r"(\d+)\s*/\s*(\d*)\s*(\S+)")


def parse_rate_limit(value: str) -> tuple[tuple[int, float], ...]:
    """``"20/min,200/day"`` → ``((20, 60.0), (200, 86400.0))``, shortest window first.

    A part is ``COUNT/UNIT`` or ``COUNT/N UNIT`` (``5/10min``); units are s, min, h, day (and
    their long forms, or 秒 分钟 小时 天). Empty means no limit. ``ValueError`` says which part
    is wrong.
    """
    limits: list[tuple[int, float]] = []
    for part in re.split(r"[,，;]", value):
        if not part.strip():
            continue
        match = _RATE_PART.fullmatch(part.strip())
        unit = _RATE_UNITS.get(match.group(3).lower()) if match else None
        if match is None or unit is None:
            raise ValueError(f"cannot read {part.strip()!r}: write it like 20/min,200/day")
        count, multiple = int(match.group(1)), int(match.group(2) or 1)
        if count < 1 or multiple < 1:
            raise ValueError(f"{part.strip()!r}: counts must be at least 1")
        limits.append((count, multiple * unit))
    return tuple(sorted(limits, key=lambda limit: limit[1]))
