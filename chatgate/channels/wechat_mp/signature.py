"""WeChat's SHA-1 request signatures: sort the parts, join them, hash, compare in constant time."""

from __future__ import annotations

import hashlib
import hmac


def sha1_signature(*parts: str) -> str:
    """The lowercase hex SHA-1 of ``parts`` sorted lexicographically and joined with nothing.

    Serves both the URL ``signature`` (token, timestamp, nonce) and the safe-mode
    ``msg_signature`` (token, timestamp, nonce, Encrypt).
    """
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def matches_signature(signature: str, *parts: str) -> bool:
    """Whether ``signature`` is the signature of ``parts``, compared in constant time."""
    # compare_digest refuses non-ASCII str, and the received value is attacker-controlled.
    expected = sha1_signature(*parts).encode("ascii")
    return hmac.compare_digest(expected, signature.encode("utf-8"))


def verify_signature(token: str, timestamp: str, nonce: str, signature: str) -> bool:
    """Whether a request's ``signature`` query parameter was made with our ``token``."""
    return matches_signature(signature, token, timestamp, nonce)
