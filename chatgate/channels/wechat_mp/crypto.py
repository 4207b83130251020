"""WeChat's message encryption (compat and safe mode): AES-256-CBC envelopes and msg_signature.

Wire format: ``Encrypt = base64(AES-256-CBC(key, iv=key[:16], pkcs7_32(random16 ‖ len ‖ msg
‖ appid)))`` where ``key = base64decode(EncodingAESKey + "=")``, ``len`` is the UTF-8 length
of ``msg`` as a big-endian uint32, and ``msg_signature = sha1_signature(token, timestamp,
nonce, Encrypt)``. The msg_signature is the only thing that authenticates a ciphertext (CBC
has no MAC), so ``decrypt_message`` checks it before decrypting anything.

Key rotation: ``decrypt_message`` tries the current EncodingAESKey, then the previous one, and
returns a ``DecryptedMessage`` whose ``crypto`` is a ``WeChatCrypto`` holding only the key
that worked; encrypting the reply with it means a reply never goes out under a key WeChat
did not use for the request. A ``WeChatCrypto`` itself always encrypts with the current key.
"""

from __future__ import annotations

import base64
import re
import secrets
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.padding import PKCS7

from chatgate.channels.wechat_mp.signature import matches_signature, sha1_signature
from chatgate.channels.wechat_mp.xml import build_xml, parse_xml
from chatgate.errors import BadRequest, SignatureError

# Same default as the ``wechat_max_body_bytes`` setting.
DEFAULT_MAX_BODY_BYTES = 64 * 1024

_ENCODING_AES_KEY = re.compile(r"[A-Za-z0-9]{43}\Z")
# WeChat pads PKCS#7 to 32-byte blocks (AES's own block is 16); cryptography's PKCS7 takes bits.
_PAD_BITS = 32 * 8
_RANDOM_BYTES = 16
_HEADER_BYTES = _RANDOM_BYTES + 4
_CANONICAL_INT = re.compile(r"(?:0|[1-9][0-9]{0,17})\Z")


def _random16(random16: bytes | None) -> bytes:
    if random16 is None:
        return secrets.token_bytes(_RANDOM_BYTES)
    if len(random16) != _RANDOM_BYTES:
        raise ValueError("random16 must be exactly 16 bytes")
    return random16


class _KeyCrypto:
    """Everything for one EncodingAESKey: encrypt, decrypt, sign, build reply envelopes."""

    __slots__ = ("_appid", "_key", "_token")

    def __init__(self, token: str, encoding_aes_key: str, appid: bytes) -> None:
        if not _ENCODING_AES_KEY.match(encoding_aes_key):
            raise ValueError("EncodingAESKey must be 43 letters and digits")
        self._token = token
        self._key = base64.b64decode(encoding_aes_key + "=")
        self._appid = appid

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def encrypt(self, plaintext: str, random16: bytes | None) -> str:
        msg = plaintext.encode("utf-8")
        padder = PKCS7(_PAD_BITS).padder()
        padded = padder.update(
            _random16(random16) + struct.pack(">I", len(msg)) + msg + self._appid
        )
        padded += padder.finalize()
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")

    def decrypt(self, encrypted: str) -> str:
        try:
            ciphertext = base64.b64decode(encrypted, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII str
            raise SignatureError("Encrypt is not base64") from None
        if not ciphertext or len(ciphertext) % 16:
            raise SignatureError("Encrypt is not a whole number of AES blocks")
        decryptor = self._cipher().decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = PKCS7(_PAD_BITS).unpadder()
        try:
            data = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise SignatureError("Encrypt does not decrypt to valid padding") from None
        if len(data) < _HEADER_BYTES:
            raise SignatureError("Encrypt decrypts to too few bytes")
        (length,) = struct.unpack(">I", data[_RANDOM_BYTES:_HEADER_BYTES])
        end = _HEADER_BYTES + length
        if end > len(data):
            raise SignatureError("Encrypt declares a longer message than it holds")
        if data[end:] != self._appid:
            raise SignatureError("Encrypt is for another appid")
        try:
            return data[_HEADER_BYTES:end].decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError("Encrypt decrypts to invalid UTF-8") from None

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return sha1_signature(self._token, timestamp, nonce, encrypted)

    def encrypt_reply(
        self, reply_xml: str, timestamp: str, nonce: str, random16: bytes | None
    ) -> str:
        encrypted = self.encrypt(reply_xml, random16)
        # The official samples write TimeStamp bare; keep a non-canonical value quoted, since
        # rewriting it (e.g. dropping a leading zero) would break the signature.
        stamp: str | int = int(timestamp) if _CANONICAL_INT.match(timestamp) else timestamp
        return build_xml(
            {
                "Encrypt": encrypted,
                "MsgSignature": self.sign(timestamp, nonce, encrypted),
                "TimeStamp": stamp,
                "Nonce": nonce,
            }
        )


@dataclass(frozen=True, slots=True)
class DecryptedMessage:
    """A decrypted push, and the crypto to encrypt its reply with."""

    xml: str
    """The decrypted inner ``<xml>``: the only part of a compat-mode body that is authenticated."""
    crypto: WeChatCrypto
    """Holds only the key that decrypted ``xml``: encrypt the reply with this."""
    used_previous_key: bool
    """True when only the previous EncodingAESKey decrypted it (worth a log line)."""


class WeChatCrypto:
    """One account's message crypto: token, EncodingAESKey (plus the previous one), appid."""

    __slots__ = ("_appid", "_keys", "_token")

    def __init__(
        self, token: str, aes_key: str, appid: str, previous_aes_key: str | None = None
    ) -> None:
        if not token:
            raise ValueError("token must not be empty")
        if not appid:
            raise ValueError("appid must not be empty")
        self._token = token
        self._appid = appid
        appid_bytes = appid.encode("utf-8")
        keys = [_KeyCrypto(token, aes_key, appid_bytes)]
        if previous_aes_key:
            keys.append(_KeyCrypto(token, previous_aes_key, appid_bytes))
        self._keys = tuple(keys)

    def _with_only(self, key: _KeyCrypto) -> WeChatCrypto:
        if self._keys == (key,):
            return self
        bound = object.__new__(WeChatCrypto)
        bound._token, bound._appid, bound._keys = self._token, self._appid, (key,)
        return bound

    def __repr__(self) -> str:
        # Never show the token or keys.
        return f"WeChatCrypto(appid={self._appid!r}, keys={len(self._keys)})"

    def encrypt(self, plaintext: str, *, random16: bytes | None = None) -> str:
        """The base64 ``Encrypt`` value of ``plaintext`` under the current key."""
        return self._keys[0].encrypt(plaintext, random16)

    def decrypt(self, encrypted: str) -> str:
        """The plaintext of an ``Encrypt`` value; ``SignatureError`` if no key decrypts it.

        This checks no signature: use ``decrypt_message`` for anything received.
        """
        return self._decrypt(encrypted)[0]

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        """The ``msg_signature`` of an ``Encrypt`` value."""
        return self._keys[0].sign(timestamp, nonce, encrypted)

    def decrypt_message(
        self,
        body: bytes,
        *,
        msg_signature: str,
        timestamp: str,
        nonce: str,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> DecryptedMessage:
        """Verify and decrypt a safe- or compat-mode POST body.

        ``msg_signature`` is the query parameter of that name (not ``signature``).
        ``BadRequest`` if the body is not an ``<xml>`` with an ``<Encrypt>``;
        ``SignatureError`` if the signature does not match or nothing decrypts.
        """
        encrypted = parse_xml(body, max_bytes=max_bytes).get("Encrypt")
        if not encrypted:
            raise BadRequest("encrypted body has no <Encrypt>")
        if not matches_signature(msg_signature, self._token, timestamp, nonce, encrypted):
            raise SignatureError("msg_signature does not match")
        xml, key = self._decrypt(encrypted)
        return DecryptedMessage(
            xml, self._with_only(key), used_previous_key=key is not self._keys[0]
        )

    def encrypt_reply(
        self, reply_xml: str, *, timestamp: str, nonce: str, random16: bytes | None = None
    ) -> str:
        """The ``<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`` envelope, current key.

        To answer a received message, use ``DecryptedMessage.crypto``: it holds the key that
        message came with.
        """
        return self._keys[0].encrypt_reply(reply_xml, timestamp, nonce, random16)

    def _decrypt(self, encrypted: str) -> tuple[str, _KeyCrypto]:
        first_error: SignatureError | None = None
        for key in self._keys:
            try:
                return key.decrypt(encrypted), key
            except SignatureError as exc:
                first_error = first_error or exc
        assert first_error is not None
        raise first_error
