"""HttpClient: responses behave as httpx's do, and a closed one is freed without the cyclic GC."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from chatgate.http_client import HttpClient

API = "http://api.test"
BODY = "分段回答".encode() * 1000


class Body(httpx.AsyncByteStream):
    """A response body in two chunks that remembers being closed; ``fail`` after the first."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield BODY[:100]
        if self.fail:
            raise httpx.ReadError("connection reset")
        yield BODY[100:]

    async def aclose(self) -> None:
        self.closed = True


def server(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/stream":
        return httpx.Response(200, stream=Body())
    return httpx.Response(200, json={"errcode": 0, "path": request.url.path})


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """Only reference counting frees objects meanwhile: what a cycle holds stays alive."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_cyclic_gc")
async def test_a_read_response_is_freed_once_dropped() -> None:
    async with HttpClient(base_url=API, transport=httpx.MockTransport(server)) as client:
        response = await client.get("/stream")
        assert response.content == BODY
        assert response.elapsed.total_seconds() >= 0
        gone = weakref.ref(response)
        del response
        assert gone() is None


@pytest.mark.usefixtures("no_cyclic_gc")
async def test_a_response_the_transport_had_read_is_freed_once_dropped() -> None:
    async with HttpClient(base_url=API, transport=httpx.MockTransport(server)) as client:
        response = await client.post("/cgi-bin/message/custom/send", json={"touser": "o1"})
        assert response.json() == {"errcode": 0, "path": "/cgi-bin/message/custom/send"}
        gone = weakref.ref(response)
        del response
        assert gone() is None


@pytest.mark.usefixtures("no_cyclic_gc")
async def test_a_streamed_response_is_freed_once_closed() -> None:
    async with HttpClient(base_url=API, transport=httpx.MockTransport(server)) as client:
        async with client.stream("GET", "/stream") as response:
            chunks = [chunk async for chunk in response.aiter_bytes()]
        assert b"".join(chunks) == BODY
        assert response.is_closed
        assert response.elapsed.total_seconds() >= 0
        gone = weakref.ref(response)
        del response
        assert gone() is None


@pytest.mark.usefixtures("no_cyclic_gc")
async def test_a_response_abandoned_mid_stream_is_freed_once_closed() -> None:
    async with HttpClient(base_url=API, transport=httpx.MockTransport(server)) as client:
        async with client.stream("GET", "/stream") as response:
            async for _chunk in response.aiter_raw():
                break
        gone = weakref.ref(response)
        del response, _chunk
        # asyncio closes the abandoned iterators (which hold the response) over the next
        # turns of the loop, one level of iterator after another.
        for _ in range(100):
            if gone() is None:
                break
            await asyncio.sleep(0)
        assert gone() is None


async def test_a_closed_stream_cannot_be_read_again() -> None:
    async with HttpClient(base_url=API, transport=httpx.MockTransport(server)) as client:
        async with client.stream("GET", "/stream") as response:
            pass
        with pytest.raises(httpx.StreamClosed):
            await response.aread()
        response = await client.get("/stream")
        assert response.content == BODY
        with pytest.raises(httpx.StreamConsumed):
            async for _chunk in response.aiter_raw():
                pass


async def test_a_failed_read_closes_the_response() -> None:
    body = Body(fail=True)
    async with HttpClient(
        base_url=API, transport=httpx.MockTransport(lambda r: httpx.Response(200, stream=body))
    ) as client:
        with pytest.raises(httpx.ReadError):
            await client.get("/")
    assert body.closed
