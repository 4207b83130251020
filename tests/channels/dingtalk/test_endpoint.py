"""HTTP callback mode: signature and skew first, then size and JSON, then the receiver."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from chatgate.channels.dingtalk.endpoint import DingTalkEndpoint
from chatgate.channels.dingtalk.receiver import Outcome
from chatgate.channels.dingtalk.sign import callback_sign
from chatgate.errors import BadRequest

SECRET = "app-secret"
NOW = 1_700_000_000.0


class Receiver:
    def __init__(self) -> None:
        self.received: list[Mapping[str, Any]] = []

    async def receive(self, data: Mapping[str, Any]) -> Outcome:
        if "msgId" not in data:
            raise BadRequest("callback without msgId")
        self.received.append(data)
        return Outcome.ACCEPTED


def signed(at: float = NOW, secret: str = SECRET) -> dict[str, str]:
    timestamp = str(int(at * 1000))
    return {"timestamp": timestamp, "sign": callback_sign(timestamp, secret)}


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def client(receiver: Receiver) -> httpx.AsyncClient:
    endpoint = DingTalkEndpoint(
        secret=SECRET,
        receiver=receiver,  # type: ignore[arg-type]
        max_body=4096,
        clock=lambda: NOW,
    )
    app = Starlette(routes=endpoint.routes("/dingtalk"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw")


BODY = json.dumps({"msgId": "m1", "text": {"content": "你好"}}, ensure_ascii=False).encode()


async def test_a_signed_callback_is_accepted_with_an_empty_reply(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    response = await client.post("/dingtalk", content=BODY, headers=signed())
    assert response.status_code == 200 and response.json() == {"msgtype": "empty"}
    assert [d["msgId"] for d in receiver.received] == ["m1"]


@pytest.mark.parametrize(
    "headers",
    [
        signed(secret="wrong"),
        signed(at=NOW - 3601),
        signed(at=NOW + 3601),
        {},
        {"timestamp": signed()["timestamp"]},
    ],
    ids=["wrong-secret", "an-hour-old", "an-hour-ahead", "unsigned", "no-sign"],
)
async def test_bad_signatures_get_403_before_the_body_is_read(
    client: httpx.AsyncClient, receiver: Receiver, headers: dict[str, str]
) -> None:
    response = await client.post("/dingtalk", content=BODY, headers=headers)
    assert response.status_code == 403
    assert receiver.received == []


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b"[1, 2]", 400), (b'{"no": "msgId"}', 400), (b"x" * 5000, 413)],
    ids=["not-json", "not-an-object", "not-a-message", "too-large"],
)
async def test_bad_bodies_get_4xx(
    client: httpx.AsyncClient, receiver: Receiver, body: bytes, status: int
) -> None:
    response = await client.post("/dingtalk", content=body, headers=signed())
    assert response.status_code == status
    assert receiver.received == []


async def test_only_post_is_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/dingtalk")).status_code == 405
