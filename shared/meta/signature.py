"""Meta's webhook signature: X-Hub-Signature-256 = sha256=<hex HMAC-SHA256 of the raw body>."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check; a missing or malformed header is simply invalid."""
    if not secret or not header:
        return False
    # Header bytes that are not UTF-8 come as surrogates: kept as they came, they never match.
    given = header.strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(sign(secret, body).encode(), given)


def signed_by(apps: Iterable[tuple[str, str]], body: bytes, header: str | None) -> str | None:
    """Which of the (app, secret) pairs signed `body`, if any: several Meta apps, or one app's
    two secrets during a rotation. Every secret is tried, so the time taken does not say
    which one matched."""
    found = None
    for app, secret in apps:
        if is_valid(secret, body, header) and found is None:
            found = app
    return found
