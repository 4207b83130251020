"""Callback signatures: HmacSHA256 of "timestamp\\nsecret", Base64, within an hour of now."""

from __future__ import annotations

import pytest

from chatgate.channels.dingtalk.sign import callback_sign, verify_callback
from chatgate.errors import SignatureError
from chatgate.sim.dingtalk_sign import callback_sign as sim_sign

SECRET = "secret-abc"
TS = "1700000000000"
NOW = 1_700_000_000.0
# printf '1700000000000\nsecret-abc' | openssl dgst -sha256 -hmac secret-abc -binary | base64
KNOWN = "e9WS2zgKfzoRGlrjUvD89A8uV7NL616AP8EGKS+lJa0="


def test_sign_matches_a_vector_computed_with_openssl_and_the_simulators_own() -> None:
    assert callback_sign(TS, SECRET) == KNOWN
    assert sim_sign(TS, SECRET) == KNOWN


def test_a_good_signature_within_the_hour_verifies() -> None:
    verify_callback(TS, KNOWN, SECRET, now=NOW)
    verify_callback(TS, KNOWN, SECRET, now=NOW + 3599)
    verify_callback(TS, KNOWN, SECRET, now=NOW - 3599)


@pytest.mark.parametrize(
    ("timestamp", "sign", "now", "reason"),
    [
        (TS, callback_sign(TS, "other"), NOW, "does not match"),
        (TS, KNOWN, NOW + 3601, "hour"),
        (TS, KNOWN, NOW - 3601, "hour"),
        ("", KNOWN, NOW, "missing"),
        (TS, "", NOW, "missing"),
        ("17e11", KNOWN, NOW, "milliseconds"),
        (TS, "签名", NOW, "does not match"),
    ],
    ids=["wrong-secret", "too-old", "from-the-future", "no-ts", "no-sign", "not-ms", "non-ascii"],
)
def test_bad_signatures_raise_signature_error(
    timestamp: str, sign: str, now: float, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason) as caught:
        verify_callback(timestamp, sign, SECRET, now=now)
    assert caught.value.status_code == 403
