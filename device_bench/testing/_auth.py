"""ADB RSA authentication on the device side: Android public keys and token signatures.

The key format (Android's `RSAPublicKey` struct, base64) has no parser in `cryptography`, so
it is decoded by hand here; the signature itself is checked by `cryptography`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import struct
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

logger = logging.getLogger(__name__)

TOKEN_SIZE = 20


def user_public_keys() -> list[str]:
    """The user's own ADB public key (`~/.android/adbkey.pub`), as the adb client signs with it.

    Returns an empty list (no host is authorized) when the file is missing.
    """
    path = Path.home() / ".android" / "adbkey.pub"
    try:
        return [path.read_text(encoding="ascii")]
    except OSError:
        logger.warning("no %s: the loopback device authorizes no host (pass auth_keys)", path)
        return []


def parse_android_public_key(key: str | bytes) -> rsa.RSAPublicKey:
    """Decodes an Android-format ADB public key (`adbkey.pub` contents, `"<base64> user@host"`).

    Args:
        key: the key text; a trailing NUL (as sent in AUTH RSAPUBLICKEY) is ignored.

    Returns:
        The RSA public key.

    Raises:
        ValueError: not base64, or not an Android `RSAPublicKey` struct.
    """
    text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    fields = text.strip("\0 \n").split()
    if not fields:
        raise ValueError("Expected an Android ADB public key ('<base64> user@host'). Received: an empty key")
    try:
        blob = base64.b64decode(fields[0], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"ADB public key is not base64. Received: key={fields[0][:24]!r}...") from exc
    if len(blob) < 8:
        raise ValueError(f"ADB public key too short. Received: {len(blob)} bytes")
    words = struct.unpack_from("<I", blob)[0]
    expected = 4 * (3 + 2 * words)
    if len(blob) != expected:
        raise ValueError(
            f"ADB public key of {words} words must be {expected} bytes. Received: {len(blob)} bytes"
        )
    modulus = int.from_bytes(blob[8 : 8 + 4 * words], "little")
    exponent = struct.unpack_from("<I", blob, 8 + 8 * words)[0]
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


def verify_token_signature(key: rsa.RSAPublicKey, token: bytes, signature: bytes) -> bool:
    """True if `signature` is `key`'s PKCS#1 v1.5 signature of `token` taken as a SHA-1 digest."""
    try:
        key.verify(signature, token, padding.PKCS1v15(), Prehashed(hashes.SHA1()))
    except (InvalidSignature, ValueError):
        return False
    return True
