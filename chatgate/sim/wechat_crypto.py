"""WeChat's signature and AES crypto, written again so a bug in the gateway's cannot hide."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from chatgate.sim import wechat_xml

# WeChat pads to 32 bytes although AES's block is 16.
PAD_BLOCK = 32


class WeChatCryptoError(ValueError):
    """A signature, key, envelope or ciphertext that WeChat would reject."""


def sha1_signature(token: str, timestamp: str, nonce: str, *extra: str) -> str:
    """sha1 of the sorted, concatenated strings, lowercase hex (`extra` is the Encrypt value)."""
    joined = "".join(sorted([token, timestamp, nonce, *extra]))
    return hashlib.sha1(joined.encode()).hexdigest()


def signature_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key from the 43-character EncodingAESKey."""
    if len(encoding_aes_key) != 43 or not encoding_aes_key.isascii():
        raise WeChatCryptoError("EncodingAESKey must be 43 ASCII characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise WeChatCryptoError("EncodingAESKey is not base64") from exc
    return key


# Padding is written by hand rather than with cryptography's PKCS7(256): on the way out we pad
# exactly as the spec says, but on the way in we accept what WeChat's official WXBizMsgCrypt
# sample accepts (any pad value 1..32, no check that the total is a multiple of 32), where the
# library would also demand 32-byte alignment. We still check every pad byte.
def pad(data: bytes) -> bytes:
    n = PAD_BLOCK - len(data) % PAD_BLOCK
    return data + bytes([n]) * n


def unpad(data: bytes) -> bytes:
    if not data:
        raise WeChatCryptoError("empty plaintext")
    n = data[-1]
    if not 1 <= n <= PAD_BLOCK or len(data) < n or data[-n:] != bytes([n]) * n:
        raise WeChatCryptoError("bad padding")
    return data[:-n]


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    # WeChat uses the first 16 key bytes as the IV.
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def encrypt(key: bytes, appid: str, message: bytes, random16: bytes | None = None) -> str:
    """base64(AES-CBC(pad(random16 ‖ len ‖ message ‖ appid)))."""
    if random16 is None:
        random16 = os.urandom(16)
    if len(random16) != 16:
        raise WeChatCryptoError("random prefix must be 16 bytes")
    plain = random16 + struct.pack(">I", len(message)) + message + appid.encode()
    encryptor = _cipher(key).encryptor()
    sealed = encryptor.update(pad(plain)) + encryptor.finalize()
    return base64.b64encode(sealed).decode()


@dataclass(frozen=True)
class Decrypted:
    random16: bytes
    message: bytes
    appid: str


def decrypt(key: bytes, encrypted: str) -> Decrypted:
    """Open an Encrypt value; the caller checks the appid (see `decrypt_for`)."""
    try:
        sealed = base64.b64decode(encrypted, validate=True)
    except binascii.Error as exc:
        raise WeChatCryptoError("Encrypt is not base64") from exc
    if not sealed or len(sealed) % 16:
        raise WeChatCryptoError("ciphertext is not a whole number of AES blocks")
    decryptor = _cipher(key).decryptor()
    plain = unpad(decryptor.update(sealed) + decryptor.finalize())
    if len(plain) < 20:
        raise WeChatCryptoError("plaintext too short")
    (length,) = struct.unpack(">I", plain[16:20])
    if 20 + length > len(plain):
        raise WeChatCryptoError("message length exceeds plaintext")
    try:
        appid = plain[20 + length :].decode()
    except UnicodeDecodeError as exc:
        raise WeChatCryptoError("appid is not UTF-8") from exc
    return Decrypted(random16=plain[:16], message=plain[20 : 20 + length], appid=appid)


def decrypt_for(key: bytes, appid: str, encrypted: str) -> bytes:
    """Decrypt and insist the trailing appid is ours, as WeChat and its SDKs do."""
    opened = decrypt(key, encrypted)
    if opened.appid != appid:
        raise WeChatCryptoError(f"appid mismatch: got {opened.appid!r}")
    return opened.message


class MessageCrypto:
    """One account's token, AES key and appid, for sealing and opening messages."""

    def __init__(self, token: str, encoding_aes_key: str, appid: str) -> None:
        self.token = token
        self.key = aes_key(encoding_aes_key)
        self.appid = appid

    def encrypt(self, xml: str, random16: bytes | None = None) -> str:
        return encrypt(self.key, self.appid, xml.encode(), random16)

    def decrypt(self, encrypted: str) -> str:
        message = decrypt_for(self.key, self.appid, encrypted)
        try:
            return message.decode()
        except UnicodeDecodeError as exc:
            raise WeChatCryptoError("message is not UTF-8") from exc

    def msg_signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return sha1_signature(self.token, timestamp, nonce, encrypted)

    def build_envelope(self, xml: str, timestamp: str, nonce: str) -> str:
        """An encrypted passive reply, the way a gateway must send one."""
        encrypted = self.encrypt(xml)
        return wechat_xml.build(
            [
                ("Encrypt", encrypted),
                ("MsgSignature", self.msg_signature(timestamp, nonce, encrypted)),
                ("TimeStamp", timestamp),
                ("Nonce", nonce),
            ]
        )

    def open_envelope(self, body: str | bytes) -> str:
        """Verify an encrypted reply's MsgSignature and return the XML inside."""
        root = wechat_xml.parse(body)
        names = ("Encrypt", "MsgSignature", "TimeStamp", "Nonce")
        values = [wechat_xml.text_of(root, name) or "" for name in names]
        missing = [name for name, value in zip(names, values, strict=True) if not value]
        if missing:
            raise WeChatCryptoError(f"encrypted reply lacks {', '.join(missing)}")
        encrypted, given, timestamp, nonce = values
        if not signature_matches(self.msg_signature(timestamp, nonce, encrypted), given):
            raise WeChatCryptoError("MsgSignature does not match")
        return self.decrypt(encrypted)
