"""The exception tree every layer may raise; imports nothing of ours.

ChatgateError
├── ConfigError          a setting is missing, unknown or invalid (raised at start)
├── BadRequest           the platform's request is malformed or too large (→ 4xx)
│   └── SignatureError   signature or decryption check failed (→ 403)
├── StoreError           the store cannot be reached or refused an operation
└── ProviderError        the LLM call failed; ``retryable`` says whether a retry may help
    └── ProviderTimeout  the LLM did not finish within its time limit
"""

from __future__ import annotations


class ChatgateError(Exception):
    """Base of every error chatgate raises on purpose."""


class ConfigError(ChatgateError):
    """A setting is missing, unknown or invalid. The message names the setting."""


class BadRequest(ChatgateError):
    """The platform sent something we cannot accept. Never touches state."""

    status_code = 400


class SignatureError(BadRequest):
    """The request's signature (or its encrypted envelope) does not verify."""

    status_code = 403


class StoreError(ChatgateError):
    """The store failed; the request is answered with a 5xx and nothing is half-written."""


class ProviderError(ChatgateError):
    """The LLM provider failed. ``retryable`` is true for 429, 5xx and connection errors."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class ProviderTimeout(ProviderError):
    """The LLM did not finish within ``CHATGATE_LLM_TIMEOUT``."""

    def __init__(self, message: str = "the model took too long to answer"):
        super().__init__(message, retryable=True)
