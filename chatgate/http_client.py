"""``HttpClient``: an ``httpx.AsyncClient`` whose responses are freed as soon as nobody holds them.

httpx 0.28 wraps each response's body in a stream that points back at the response
(``response.stream._response is response``), to set ``response.elapsed`` when it closes. That
reference cycle leaves every response — its request, headers, and httpcore's pool bookkeeping,
about 34 objects — to the cyclic garbage collector instead of being freed when the caller drops
it. A burst of pushes piles them up by the tens of thousands, and the young collection that
finally finds them spends ~45 ms freeing them in one go while every webhook waits on the loop.
(Reported upstream as encode/httpx#3733; the httpx2 fork that the ``openai`` SDK uses has it
fixed.) So the response keeps httpx's stream only until the body is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["HttpClient"]


class _ReleasedOnClose(httpx.AsyncByteStream):
    """A response's body stream that lets go of httpx's bound stream once it is closed."""

    __slots__ = ("_bound",)

    def __init__(self, bound: httpx.AsyncByteStream) -> None:
        self._bound: httpx.AsyncByteStream | None = bound

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._bound is None:
            raise httpx.StreamClosed()
        return self._bound.__aiter__()

    async def aclose(self) -> None:
        bound, self._bound = self._bound, None
        if bound is not None:
            # It sets ``response.elapsed`` first; dropped then, it takes the cycle with it.
            await bound.aclose()


class HttpClient(httpx.AsyncClient):
    """``httpx.AsyncClient``, but a closed response holds no reference cycle.

    Every way of sending (``get``, ``post``, ``stream``, ``send``) goes through ``send``.
    """

    async def send(
        self, request: httpx.Request, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        response = await super().send(request, stream=True, **kwargs)
        assert isinstance(response.stream, httpx.AsyncByteStream)  # an async client's
        body = response.stream = _ReleasedOnClose(response.stream)
        if stream:
            return response
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        finally:
            # The read closes it, unless the transport handed over a response it had read
            # itself (``httpx.MockTransport`` does), which httpx then never closes.
            await body.aclose()
        return response
