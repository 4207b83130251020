"""``chatgate check``: validate a configuration and say what WeChat's console needs, offline.

Loads the settings exactly as ``serve`` would and builds the app without starting it, then
reports, section by section, what to type into the console (server URL, Token,
EncodingAESKey, encryption mode), whether the API IP whitelist matters and which address to
put there, which delivery mode will run and why, and anything that will fail at run time.
Nothing is contacted: no network, no store connection. Secrets are never printed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import socket
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from chatgate.config import OPENAI_BASE_URL, Settings, env_name, load_settings
from chatgate.errors import ConfigError

Level = Literal["ok", "info", "warning", "problem"]
_MARKS: Mapping[Level, str] = {"ok": "ok", "info": "--", "warning": "!!", "problem": "XX"}

# The console accepts a Token of 3 to 32 letters and digits only.
_CONSOLE_TOKEN = re.compile(r"^[A-Za-z0-9]{3,32}$")
_APPID = re.compile(r"^wx[0-9a-f]{16}$")
# A documentation address (RFC 5737): connecting a UDP socket to it sends nothing, but makes
# the OS pick the interface this host would use to reach the internet.
_PROBE_ADDRESS = "192.0.2.1"


@dataclass
class Section:
    title: str
    lines: list[tuple[Level, str]] = field(default_factory=list)

    def add(self, level: Level, text: str) -> None:
        self.lines.append((level, text))


@dataclass
class Report:
    sections: list[Section] = field(default_factory=list)
    # Settings whose values were invalid (reported under Settings, defaults assumed after).
    invalid: set[str] = field(default_factory=set)

    def section(self, title: str) -> Section:
        section = Section(title)
        self.sections.append(section)
        return section

    def count(self, level: Level) -> int:
        return sum(1 for s in self.sections for lvl, _ in s.lines if lvl == level)

    @property
    def ok(self) -> bool:
        return self.count("problem") == 0

    def render(self) -> str:
        problems, warnings = self.count("problem"), self.count("warning")
        if problems:
            head = f"chatgate check: {problems} problem(s), {warnings} warning(s)"
        else:
            head = f"chatgate check: configuration OK, {warnings} warning(s)"
        out = [head]
        for section in self.sections:
            out += ["", section.title]
            for level, text in section.lines:
                first, *rest = text.split("\n")
                out.append(f"  [{_MARKS[level]}] {first}")
                out += [f"       {line}" for line in rest]
        return "\n".join(out) + "\n"


def check(
    config_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Report:
    """The report for these settings (``environ`` defaults to the process environment)."""
    report = Report()
    settings_section = report.section("Settings")
    try:
        settings = load_settings(config_file, environ)
    except ConfigError as exc:
        problems = _split_problems(str(exc))
        for problem in problems:
            settings_section.add("problem", _explain(problem, config_file, environ))
        # Carry on with defaults in place of the bad values, to report everything else too.
        bad = {f for f in map(_field_of, problems) if f is not None}
        report.invalid = bad
        try:
            settings = load_settings(
                config_file, environ, **{f: Settings.model_fields[f].default for f in bad}
            )
        except ConfigError:
            return report
        settings_section.add("info", "the rest assumes the defaults in place of the values above")
    else:
        source = (
            f"{config_file} and CHATGATE_* variables" if config_file else "CHATGATE_* variables"
        )
        settings_section.add("ok", f"loaded from {source}")
    try:
        _build(settings)
    except ConfigError as exc:
        settings_section.add("problem", str(exc))
    except Exception as exc:  # anything else building the app would also stop `serve`
        settings_section.add("problem", f"the app cannot be built: {type(exc).__name__}: {exc}")
    _wechat(report, settings)
    _dingtalk(report, settings)
    _llm(report, settings)
    _server(report, settings)
    return report


def _split_problems(message: str) -> list[str]:
    prefix = "invalid setting "
    if message.startswith(prefix):
        parts = message[len(prefix) :].split("; ")
        return [part.strip().replace(": Value error, ", ": ") for part in parts]
    return [message]


def _field_of(problem: str) -> str | None:
    """The setting a problem from ``load_settings`` is about (``CHATGATE_X: …``)."""
    name = re.split(r"[ :]", problem, maxsplit=1)[0]
    field = name.removeprefix("CHATGATE_").lower()
    return field if name.startswith("CHATGATE_") and field in Settings.model_fields else None


def _explain(
    problem: str, config_file: str | Path | None, environ: Mapping[str, str] | None
) -> str:
    """``problem`` with what is wrong with the value, for values people paste by hand."""
    if _field_of(problem) != "wechat_aes_key":
        return problem
    raw = _raw_value("wechat", "aes_key", config_file, environ)
    if raw is None:
        return problem
    return (
        f"{env_name('wechat_aes_key')} is not a valid EncodingAESKey: it {_shape(raw)}.\n"
        "Copy the 43 letters and digits of 消息加解密密钥 from the console, nothing else."
    )


def _shape(secret: str) -> str:
    """How long a pasted secret is and which odd characters it holds, never the secret."""
    odd = sorted({c for c in secret if not (c.isascii() and c.isalnum())})
    shape = f"has {len(secret)} characters"
    if odd:
        shape += ", including " + " ".join(repr(c) for c in odd)
    return shape


def _raw_value(
    section: str, key: str, config_file: str | Path | None, environ: Mapping[str, str] | None
) -> str | None:
    env = os.environ if environ is None else environ
    name = env_name(f"{section}_{key}")
    for candidate, value in env.items():
        if candidate.upper() == name:
            return value
    if config_file is None:
        return None
    try:
        data = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    table = data.get(section)
    found = table.get(key) if isinstance(table, dict) else None
    return found if isinstance(found, str) else None


def _build(settings: Settings) -> None:
    """Build the app as ``serve`` would (files read, channels wired), without starting it."""
    from chatgate.app.asgi import build_app

    with _quiet_logs():
        build_app(settings)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    # Building the app warns about what this report explains better.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _console_url(settings: Settings, path: str) -> tuple[Level, str]:
    if settings.public_url is None:
        return "warning", (
            f"https://YOUR-HOST{path}  (set {env_name('public_url')} to your public base URL)"
        )
    url = settings.public_url + path
    parts = urlsplit(url)
    if parts.port not in (None, 80, 443):
        return "problem", f"{url}: WeChat only calls ports 80 and 443; proxy to this port"
    if parts.scheme != "https":
        return "warning", f"{url}  (plain http works on port 80, but use https)"
    return "ok", url


def _wechat(report: Report, settings: Settings) -> None:
    section = report.section(
        "WeChat Official Account (公众号后台 → 设置与开发 → 基本配置 → 服务器配置)"
    )
    if not settings.wechat_enabled:
        if settings.dingtalk_enabled:
            section.add("info", f"off: {env_name('wechat_token')} is not set")
        else:
            section.add(
                "problem",
                f"{env_name('wechat_token')} is not set: the WeChat webhook is off and no other\n"
                "channel is configured. Pick a Token of 3-32 letters and digits, and set it\n"
                "here and in the console's Token (令牌) field.",
            )
        return
    assert settings.wechat_token is not None
    token = settings.wechat_token.get_secret_value()
    level, url = _console_url(settings, settings.wechat_path)
    section.add(level, f"URL (服务器地址): {url}")
    if _CONSOLE_TOKEN.match(token):
        section.add(
            "ok", f"Token (令牌): the value of {env_name('wechat_token')} ({len(token)} characters)"
        )
    else:
        section.add(
            "problem",
            f"Token (令牌): {env_name('wechat_token')} {_shape(token)}; the console accepts\n"
            "only 3-32 letters and digits, so it cannot match.",
        )
    if settings.wechat_aes_key is not None:
        section.add(
            "ok", f"EncodingAESKey (消息加解密密钥): the value of {env_name('wechat_aes_key')}"
        )
        section.add(
            "ok",
            "Encryption mode (消息加解密方式): 安全模式 (safe); 兼容模式 (compat) works too",
        )
        if not settings.wechat_appid:
            section.add(
                "problem",
                f"{env_name('wechat_appid')} is not set: encrypted messages carry the AppID\n"
                "and are refused without it (开发者ID(AppID) on the same console page).",
            )
    elif "wechat_aes_key" in report.invalid:
        section.add("problem", "EncodingAESKey (消息加解密密钥): invalid, see Settings above")
    else:
        section.add(
            "info",
            "EncodingAESKey (消息加解密密钥): not set; any value in the console is ignored",
        )
        section.add(
            "warning",
            "Encryption mode (消息加解密方式): choose 明文模式 (plaintext): messages travel\n"
            f"unencrypted. For 安全模式 set {env_name('wechat_aes_key')} to the console's 43\n"
            "character key.",
        )
    if settings.wechat_appid and not _APPID.match(settings.wechat_appid):
        section.add(
            "warning", f"{env_name('wechat_appid')} does not look like an AppID (wx + 16 hex)"
        )
    _delivery_mode(section, settings)


def _delivery_mode(section: Section, settings: Settings) -> None:
    mode = settings.wechat_mode or "passive"
    chosen = "wechat_mode" in settings.model_fields_set
    if mode == "passive":
        why = (
            f"{env_name('wechat_mode')}=passive"
            if chosen
            else "AppID and AppSecret are not both set\n(the customer-service API needs both)"
        )
        later = "「1」 and the answer page" if settings.public_url else "「1」"
        section.add(
            "info",
            f"Delivery: passive, because {why}.\n"
            "Answers go out only inside WeChat's tries (about 15 s); slower ones wait for\n"
            f"{later}. Works on every account, verified or not.",
        )
        section.add("info", "IP whitelist (IP白名单): not needed; passive mode calls no WeChat API")
        return
    why = f"{env_name('wechat_mode')}={mode}" if chosen else "AppID and AppSecret are set"
    what = (
        "replies inline when an answer is ready within a try, else pushes it through the\n"
        "customer-service API"
        if mode == "hybrid"
        else "acknowledges every message at once and pushes the answer through the\n"
        "customer-service API"
    )
    section.add(
        "info", f"Delivery: {mode}, because {why}: {what} (verified accounts only; 48 h window)."
    )
    section.add("warning", "IP whitelist (IP白名单): " + _whitelist_advice())


def _whitelist_advice() -> str:
    address = _outbound_address()
    base = (
        "add this server's public outbound IP, or every API call fails with\n"
        "errcode 40164 (设置与开发 → 基本配置 → IP白名单)."
    )
    if address is None:
        return base + " This host's address could not be determined."
    ip = ipaddress.ip_address(address)
    if ip.is_private or ip.is_loopback or ip.is_link_local:
        return (
            base + f"\nThis host goes out from {address}, a private address: whitelist the public\n"
            "IP of its NAT gateway instead (ask your provider, or: curl -s ifconfig.me)."
        )
    return base + f"\nThis host goes out from {address}."


def _outbound_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((_PROBE_ADDRESS, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None


def _dingtalk(report: Report, settings: Settings) -> None:
    if not settings.dingtalk_enabled:
        return
    section = report.section("DingTalk robot (开放平台 → 应用开发 → 机器人)")
    section.add("ok", f"Client ID: {settings.dingtalk_client_id}")
    if settings.dingtalk_mode == "stream":
        section.add(
            "info", "Message mode: Stream (the gateway connects out; no public URL is needed)"
        )
    else:
        level, url = _console_url(settings, settings.dingtalk_path)
        section.add(level, f"Message mode: HTTP; message receiving URL: {url}")


def _llm(report: Report, settings: Settings) -> None:
    section = report.section("Model")
    if settings.llm_provider == "fake":
        section.add("warning", "llm_provider is fake: answers are canned, no model is called")
        return
    host = urlsplit(settings.llm_base_url).hostname or settings.llm_base_url
    name = "Dify app" if settings.llm_provider == "dify" else f"model {settings.llm_model}"
    section.add("ok", f"{name} at {host}, {settings.llm_timeout:g} s per answer")
    if not settings.llm_api_key.get_secret_value():
        if settings.llm_base_url == OPENAI_BASE_URL:
            section.add(
                "problem", f"{env_name('llm_api_key')} is not set: OpenAI will refuse every call"
            )
        else:
            section.add("info", f"{env_name('llm_api_key')} is empty (fine for a keyless server)")


def _server(report: Report, settings: Settings) -> None:
    section = report.section("Server")
    section.add("ok", f"listens on {settings.host}:{settings.port}")
    loopback = settings.host in ("127.0.0.1", "localhost", "::1")
    if loopback:
        section.add("info", "reachable from this machine only: put nginx in front (deploy/)")
    if settings.store == "memory://":
        section.add(
            "warning", "store memory://: conversations and unread answers are lost on restart"
        )
    elif settings.store.startswith("sqlite:///"):
        path = Path(settings.store.removeprefix("sqlite:///"))
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            section.add("problem", f"store {settings.store}: folder {folder} does not exist")
        elif not os.access(folder, os.W_OK):
            section.add("problem", f"store {settings.store}: folder {folder} is not writable")
        else:
            section.add("ok", f"store {settings.store}")
    else:
        section.add("ok", f"store {urlsplit(settings.store).scheme}://")
    if settings.public_url is None:
        section.add(
            "warning", f"{env_name('public_url')} is not set: replies carry no answer-page links"
        )
    if settings.metrics_token is None and not loopback:
        section.add(
            "warning",
            f"/metrics is open to anyone who reaches port {settings.port}: set\n"
            f"{env_name('metrics_token')}, or block /metrics at the proxy",
        )
    section.add(
        "info",
        f"on SIGTERM: webhooks get 503, running answers get {settings.shutdown_grace:g} s "
        "to finish",
    )
