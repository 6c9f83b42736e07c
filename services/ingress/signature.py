"""Meta's webhook signature: X-Hub-Signature-256 = sha256=<hex HMAC-SHA256 of the raw body>."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check; a missing or malformed header is simply invalid."""
    if not secret or not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())
