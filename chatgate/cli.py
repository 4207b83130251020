"""Command line: ``chatgate serve | worker | check | demo | simulate``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from pydantic import SecretStr

from chatgate import __version__
from chatgate.config import Settings, load_settings
from chatgate.errors import ConfigError


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _secrets(settings: Settings) -> list[str]:
    """Every secret setting's value, for the log formatter to mask."""
    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatgate",
        description="Put an LLM behind a WeChat Official Account: every answer reaches the user.",
    )
    parser.add_argument("--version", action="version", version=f"chatgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the gateway (webhook and answer jobs in one process)",
        description="Run the gateway. Settings come from CHATGATE_* variables or --config.",
    )
    serve.add_argument("--config", metavar="FILE", help="a TOML settings file")
    serve.add_argument("--host", help="address to bind (CHATGATE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (CHATGATE_PORT, default 8000)")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="webhooks only: answer jobs go to `chatgate worker` processes (needs Redis)",
    )

    worker = commands.add_parser(
        "worker",
        help="answer jobs only, taken from Redis (for deployments of several processes)",
        description=(
            "Take answer jobs from the Redis job stream (CHATGATE_STORE=redis://...) and run "
            "them; a worker that dies has its jobs taken over by another after "
            "CHATGATE_JOB_CLAIM_AFTER seconds. Its HTTP side serves only /healthz, /readyz "
            "and /metrics, on CHATGATE_HOST:CHATGATE_PORT."
        ),
    )
    worker.add_argument("--config", metavar="FILE", help="a TOML settings file")
    worker.add_argument("--host", help="address of the health port (CHATGATE_HOST)")
    worker.add_argument("--port", type=int, help="health port (CHATGATE_PORT, default 8000)")

    check = commands.add_parser(
        "check",
        help="validate the settings and show what WeChat's console needs, without serving",
        description=(
            "Load the settings as serve would, build the app without starting it, and say what "
            "to enter in WeChat's console (URL, Token, EncodingAESKey, encryption mode, IP "
            "whitelist) and which delivery mode will run. Exits 1 if anything would fail."
        ),
    )
    check.add_argument("--config", metavar="FILE", help="a TOML settings file")

    demo = commands.add_parser(
        "demo",
        help="the whole loop offline: a simulated WeChat user, the gateway, a fake LLM",
        description=(
            "Start the gateway, a fake LLM and a scripted WeChat user on loopback, and print "
            "the conversation as the user sees it. Needs no network and no settings; "
            "ends by itself."
        ),
    )
    demo.add_argument(
        "--channel",
        choices=("wechat", "dingtalk"),
        default="wechat",
        help="the platform to simulate: a WeChat user (default) or DingTalk users and groups",
    )

    simulate = commands.add_parser(
        "simulate",
        help="a terminal WeChat user talking to any running gateway",
        description="Type messages as a WeChat user; see what WeChat would show.",
    )
    simulate.add_argument("--url", required=True, help="the gateway's WeChat URL")
    simulate.add_argument("--token", required=True, help="the WeChat token configured there")
    simulate.add_argument("--aes-key", help="EncodingAESKey, to send encrypted (safe mode)")
    simulate.add_argument("--appid", default="wxsimulated0000000", help="AppID for encryption")
    simulate.add_argument("--user", default="o_simulated_user", help="the user's OpenID")
    simulate.add_argument("--account", default="gh_simulated", help="the account's original id")
    return parser


def _serve(args: argparse.Namespace) -> int:
    from chatgate.app.asgi import build_app
    from chatgate.app.logs import configure_logging
    from chatgate.app.roles import Role
    from chatgate.app.server import serve

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings: Settings = load_settings(args.config, **overrides)
    configure_logging(settings.log_level, settings.log_format, _secrets(settings))
    role = Role.WORKER if args.command == "worker" else Role.WEB if args.no_worker else Role.ALL
    app = build_app(settings, role=role)
    serve(app, host=settings.host, port=settings.port, access_log=settings.log_level == "debug")
    return 0


def _check(args: argparse.Namespace) -> int:
    from chatgate.app.check import check

    report = check(args.config)
    print(report.render(), end="")
    return 0 if report.ok else 1


def _demo(args: argparse.Namespace) -> int:
    from chatgate.demo import run_demo

    _configure_logging("warning")
    if args.channel == "dingtalk":
        from chatgate.demo_dingtalk import run_dingtalk_demo

        return asyncio.run(run_dingtalk_demo())
    return asyncio.run(run_demo())


def _simulate(args: argparse.Namespace) -> int:
    from chatgate.sim.user import run_terminal_user
    from chatgate.sim.wechat import WeChatSim

    async def go() -> None:
        sim = WeChatSim(
            args.url, args.token, appid=args.appid, aes_key=args.aes_key, account=args.account
        )
        await run_terminal_user(sim, args.user)

    asyncio.run(go())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in ("serve", "worker"):
            return _serve(args)
        if args.command == "check":
            return _check(args)
        if args.command == "demo":
            return _demo(args)
        return _simulate(args)
    except ConfigError as exc:
        print(f"chatgate: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
