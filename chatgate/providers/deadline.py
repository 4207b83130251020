"""A whole-answer deadline for provider calls that surfaces as ``ProviderTimeout``."""

from __future__ import annotations

import asyncio
from typing import Any

from chatgate.errors import ProviderTimeout


class Deadline:
    """``asyncio.timeout_at`` that turns its own expiry into ``ProviderTimeout``.

    Guard each await with a fresh ``Deadline`` rather than a whole generator: a timeout armed
    across a ``yield`` would fire inside the consumer's code instead of the provider's.
    """

    def __init__(self, deadline: float, limit: float) -> None:
        self._timeout = asyncio.timeout_at(deadline)
        self._limit = limit

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self._timeout.__aexit__(*exc_info)
        except TimeoutError:
            # A TimeoutError from inside the block is not ours to rename.
            if not self._timeout.expired():
                raise
            raise ProviderTimeout(
                f"the model did not finish its answer within {self._limit:g}s"
            ) from None
