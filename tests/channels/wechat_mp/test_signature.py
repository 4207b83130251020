"""URL and message signatures against WeChat's official worked examples."""

from __future__ import annotations

import pytest

from chatgate.channels.wechat_mp.signature import (
    matches_signature,
    sha1_signature,
    verify_signature,
)

# (token, timestamp, nonce, signature) from the spec's §1 table.
OFFICIAL = [
    ("AAAAA", "1714037059", "486452656", "899cf89e464efb63f54ddac96b0a0a235f53aa78"),
    ("AAAAA", "1714036504", "1514711492", "f464b24fc39322e44b38aa78f5edd27bd1441696"),
]


@pytest.mark.parametrize(("token", "timestamp", "nonce", "signature"), OFFICIAL)
def test_sha1_signature_reproduces_official_examples(
    token: str, timestamp: str, nonce: str, signature: str
) -> None:
    assert sha1_signature(token, timestamp, nonce) == signature


@pytest.mark.parametrize(("token", "timestamp", "nonce", "signature"), OFFICIAL)
def test_verify_signature_accepts_official_examples(
    token: str, timestamp: str, nonce: str, signature: str
) -> None:
    assert verify_signature(token, timestamp, nonce, signature)


def test_sha1_signature_ignores_argument_order() -> None:
    assert sha1_signature("1714037059", "486452656", "AAAAA") == sha1_signature(
        "AAAAA", "1714037059", "486452656"
    )


def test_sha1_signature_of_four_parts_is_the_msg_signature_of_vector_a() -> None:
    encrypt = (
        "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
    )
    assert (
        sha1_signature("pamtest", "1409304348", "xxxxxx", encrypt)
        == "82c962d39941aa48552f90ef55aa323dc620cc10"
    )


@pytest.mark.parametrize(
    ("token", "timestamp", "nonce"),
    [
        ("AAAAB", "1714037059", "486452656"),
        ("AAAAA", "1714037060", "486452656"),
        ("AAAAA", "1714037059", "486452657"),
    ],
)
def test_verify_signature_rejects_any_changed_input(token: str, timestamp: str, nonce: str) -> None:
    assert not verify_signature(token, timestamp, nonce, OFFICIAL[0][3])


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "899cf89e464efb63f54ddac96b0a0a235f53aa7",  # one character short
        "899cf89e464efb63f54ddac96b0a0a235f53aa780",  # one character long
        "899CF89E464EFB63F54DDAC96B0A0A235F53AA78",  # WeChat sends lowercase only
        "899cf89e464efb63f54ddac96b0a0a235f53aa7é",  # non-ASCII must not raise
    ],
)
def test_verify_signature_rejects_malformed_signatures_without_raising(signature: str) -> None:
    assert not verify_signature("AAAAA", "1714037059", "486452656", signature)


def test_matches_signature_checks_any_number_of_parts() -> None:
    signature = sha1_signature("a", "b", "c", "d")
    assert matches_signature(signature, "d", "c", "b", "a")
    assert not matches_signature(signature, "a", "b", "c")
