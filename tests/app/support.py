"""App test helpers: the real app on loopback, and Prometheus samples read by name and labels."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from chatgate.app.asgi import build_app
from chatgate.config import load_settings
from chatgate.sim.server import LoopbackServer
from chatgate.store.base import Store
from tests.e2e.harness import gateway_settings


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample in ``text``, keyed by (name, labels)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``; ``None`` if absent."""
    return samples(text).get((name, frozenset(labels.items())))


def total(text: str, name: str, **labels: str) -> float:
    """The sum of ``name`` over every sample whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and want <= ls)


@dataclass
class Served:
    url: str
    app: Starlette

    @property
    def wechat_url(self) -> str:
        return self.url + self.app.state.services.settings.wechat_path


@asynccontextmanager
async def serve_app(store: Store | None = None, **overrides: Any) -> AsyncIterator[Served]:
    """The real app with the fake provider (and ``overrides``) on a loopback port."""
    values = gateway_settings("http://unused.invalid", llm_provider="fake")
    values.update(overrides)
    app = build_app(load_settings(environ={}, **values), **({"store": store} if store else {}))
    async with LoopbackServer(app) as server:
        yield Served(server.url, app)
