"""Who is asking: the platform token (`ADMIN_TOKEN`, businesses only) or a business API key
(`wak_...`, looked up by its SHA-256 hash, so the key itself is never stored), and what each
may do. Tokens are compared in constant time; the key lookup is a point query per request,
so a revoked key is refused from the moment its DELETE answered, on every instance."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from services.api.errors import forbidden, unauthorized

KEY_PREFIX = "wak_"
PLATFORM = "platform"
USER = "user"  # a console user, signed in with a session cookie
SESSION_COOKIE = "console_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Principal:
    """`business_id` None: the platform token."""

    kind: str  # platform, key or user
    key_id: str = ""
    business_id: str | None = None
    role: str = ""

    @property
    def actor(self) -> str:
        """What events record as who did it."""
        return PLATFORM if self.kind == PLATFORM else self.key_id

    @property
    def audit(self) -> dict[str, str]:
        """Event metadata naming the actor (key id and role, or the platform)."""
        if self.kind == PLATFORM:
            return {"actor": PLATFORM}
        return {"actor": self.key_id, "actor_role": self.role}

    @property
    def bucket(self) -> str:
        """Rate limits are per key (the platform token is one key)."""
        return self.key_id or PLATFORM


def new_key() -> tuple[str, str, str]:
    """A fresh key: (key id, the key shown once, its hash as stored)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return "key_" + secrets.token_hex(8), key, hash_key(key)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(request: web.Request) -> bytes | None:
    """The credentials of `Authorization: Bearer ...`, as bytes (aiohttp hands undecodable
    header bytes over as surrogates, which must not raise here)."""
    header = request.headers.get("Authorization", "")
    try:
        given = header.encode("utf-8")
    except UnicodeEncodeError:
        return None
    scheme, _, credentials = given.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return credentials.strip() or None


async def authenticate(request: web.Request, pool: asyncpg.Pool, admin_token: str) -> Principal:
    token = bearer(request)
    if token is None:
        if SESSION_COOKIE in request.cookies:
            return await _signed_in(request, pool)
        raise unauthorized()
    if admin_token and hmac.compare_digest(token, admin_token.encode()):
        return Principal(PLATFORM)
    if not token.startswith(KEY_PREFIX.encode()) or len(token) > 200:
        raise unauthorized()
    digest = hashlib.sha256(token).hexdigest()
    row = await pool.fetchrow(
        "SELECT key_id, business_id, role, key_hash FROM api_keys"
        " WHERE key_hash = $1 AND revoked_at IS NULL",
        digest,
    )
    # The lookup is by hash (an attacker cannot steer its bytes); compared again all the same.
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        raise unauthorized()
    return Principal("key", row["key_id"], row["business_id"], row["role"])


def require_platform(principal: Principal) -> None:
    if principal.kind != PLATFORM:
        raise forbidden("businesses are managed with the platform token")


def require_key(principal: Principal, method: str, roles: tuple[str, ...]) -> str:
    """The caller's business, when its key's role may do this. Viewers may only read."""
    if principal.business_id is None:
        raise forbidden("the platform token manages businesses only; use a business API key")
    if method not in ("GET", "HEAD") and principal.role == "viewer":
        raise forbidden("a viewer key may only read")
    if principal.role not in roles:
        raise forbidden(f"this needs a key of role {' or '.join(roles)}")
    return principal.business_id


async def _signed_in(request: web.Request, pool: asyncpg.Pool) -> Principal:
    """A console user by their session cookie. A write must also carry the session's CSRF
    token in X-CSRF-Token (the cookie is SameSite=Strict too; the header is what a form on
    another site cannot send)."""
    found = await find_session(pool, request.cookies.get(SESSION_COOKIE, ""))
    if found is None:
        raise unauthorized("not signed in, or the session ended")
    if request.method not in ("GET", "HEAD"):
        given = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), found["csrf_token"].encode()):
            raise forbidden("missing or wrong X-CSRF-Token for this session")
    return Principal(USER, found["user_id"], found["business_id"], found["role"])


def session_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def find_session(pool: asyncpg.Pool, value: str) -> asyncpg.Record | None:
    """The signed-in user of a cookie value (None: no such session, expired, or the user
    deleted: their sessions went with them)."""
    if not value or len(value) > 200:
        return None
    return await pool.fetchrow(
        "SELECT s.csrf_token, u.user_id, u.business_id, u.role, u.email, u.name, u.language"
        " FROM api_sessions s JOIN api_users u ON u.user_id = s.user_id"
        " WHERE s.session_hash = $1 AND s.expires_at > now()",
        session_hash(value),
    )
