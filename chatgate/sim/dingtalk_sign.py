"""DingTalk's HmacSHA256 callback signature, written from the spec (no code shared with us)."""

from __future__ import annotations

import base64
import hashlib
import hmac


def callback_sign(timestamp_ms: str, secret: str) -> str:
    """``sign`` header of an HTTP-mode callback: Base64(HmacSHA256(secret, ts + "\\n" + secret))."""
    message = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")
