"""Password hashes: the standard library's scrypt (RFC 7914), memory-hard, with a random
salt per password and the parameters kept in the hash, so they can be raised later without
breaking the hashes already stored. No new dependency (docs/decisions/0012)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

# One of OWASP's equivalent minimums (N=2^15, r=8, p=3): 32 MiB, about 0.5 s of one core
# here; the api hashes in a worker thread, never on its event loop.
N, R, P = 2**15, 8, 3
MAXMEM = 64 * 1024 * 1024
MIN_LENGTH = 10
MAX_LENGTH = 1024  # hashing is slow by design: a huge "password" is no one's


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, n: int = N, p: int = P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=R, p=p, maxmem=MAXMEM, dklen=32)
    return f"scrypt${n}${R}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        given = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=MAXMEM,
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(given, _unb64(digest))


# A stored hash to check a password against when the email is unknown, so that an unknown
# email takes as long to refuse as a wrong password.
DUMMY = hash_password(secrets.token_urlsafe(16))


async def hashed(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verified(password: str, stored: str | None) -> bool:
    """Whether `password` is the one `stored` hashes (None: an unknown user, refused after
    the same work)."""
    ok = await asyncio.to_thread(verify_password, password, stored or DUMMY)
    return ok and stored is not None
