"""DingTalk's HTTP-callback signature: Base64(HmacSHA256(secret, timestamp + "\\n" + secret))."""

from __future__ import annotations

import base64
import hashlib
import hmac

from chatgate.errors import SignatureError

# DingTalk refuses timestamps more than an hour off; so do we, both ways.
MAX_SKEW = 3600.0


def callback_sign(timestamp: str, secret: str) -> str:
    """The ``sign`` header DingTalk sends with a callback made at ``timestamp`` (ms)."""
    message = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def verify_callback(
    timestamp: str, sign: str, secret: str, *, now: float, max_skew: float = MAX_SKEW
) -> None:
    """Raise ``SignatureError`` unless ``sign`` is right and ``timestamp`` is within the skew.

    ``now`` is Unix seconds; ``timestamp`` is milliseconds, as DingTalk sends it.
    """
    if not timestamp or not sign:
        raise SignatureError("timestamp or sign header missing")
    if not timestamp.isdigit():
        raise SignatureError("timestamp is not a number of milliseconds")
    if abs(now - int(timestamp) / 1000) > max_skew:
        raise SignatureError("timestamp is more than an hour off")
    expected = callback_sign(timestamp, secret).encode("ascii")
    # compare_digest refuses non-ASCII str, and the header is attacker-controlled.
    if not hmac.compare_digest(expected, sign.encode("utf-8")):
        raise SignatureError("sign does not match")
