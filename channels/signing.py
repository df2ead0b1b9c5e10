"""HMAC-SHA256 request signatures for server-to-server channels (the resident app, our webhooks).

The signature covers ``timestamp + "\\n" + nonce + "\\n" + body`` with a shared secret, hex
encoded, in the headers ``X-Anju-Timestamp`` (Unix seconds), ``X-Anju-Nonce`` (8–64 characters)
and ``X-Anju-Signature``. A request outside the time window, with a nonce seen before, or with a
wrong signature is refused; the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

TIMESTAMP = "X-Anju-Timestamp"
NONCE = "X-Anju-Nonce"
SIGNATURE = "X-Anju-Signature"


def sign(secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    """The headers of a request we send (webhooks), signed now."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
    return {TIMESTAMP: timestamp, NONCE: nonce, SIGNATURE: sign(secret, timestamp, nonce, body)}


class BadSignature(Exception):
    """Why a signed request was refused (for the log; the client gets a plain 403)."""


def check(
    secret: str, headers: Mapping[str, str], body: bytes, *, window_seconds: int, now: float | None = None
) -> str:
    """Verify the signature and the time window; returns the nonce (the caller checks replays)."""
    lower = {k.lower(): v for k, v in headers.items()}  # HTTP header names are case-insensitive
    timestamp, nonce, signature = (lower.get(h.lower()) for h in (TIMESTAMP, NONCE, SIGNATURE))
    if not timestamp or not nonce or not signature:
        raise BadSignature("missing signature headers")
    if not (timestamp.isascii() and timestamp.isdecimal()) or not 8 <= len(nonce) <= 64:
        raise BadSignature("malformed timestamp or nonce")
    if abs((now or time.time()) - int(timestamp)) > window_seconds:
        raise BadSignature(f"timestamp {timestamp} outside the {window_seconds} s window")
    if not hmac.compare_digest(sign(secret, timestamp, nonce, body), signature.lower()):
        raise BadSignature("signature does not match")
    return nonce
