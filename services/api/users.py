"""Console users (`POST | GET | PATCH | DELETE /v1/users`, business admins) and their sessions.

A user belongs to one business and has a role as keys do (admin, agent, viewer). Sign-in
emails are unique in the deployment (lower-cased). The password is kept as a scrypt hash
(passwords.py), never returned, logged or put in an event. A session is a random cookie
value kept as its SHA-256, with a CSRF token the console sends back on every write;
deleting a user deletes their sessions in the same transaction, so they are signed out at
once, on every instance."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import asyncpg
import msgspec
from msgspec import UNSET, Meta, UnsetType

from services.api import cursor as cursors
from services.api import directory, inputs, passwords
from services.api.auth import session_hash
from services.api.errors import conflict, invalid, not_found
from services.api.routes import Call, Reply, created, paging
from services.api.schemas import Answer, Request, Time
from services.api.writes import Write, write
from shared.events.business import UserChanged, UserCreated, UserDeleted
from shared.eventstore import new

SESSION_HOURS = 12
EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,190}$"


class CreateUser(Request, kw_only=True):
    email: Annotated[str, Meta(pattern=EMAIL, max_length=254)]
    name: Annotated[str, Meta(max_length=200)] = ""
    role: Literal["admin", "agent", "viewer"]
    password: Annotated[str, Meta(max_length=passwords.MAX_LENGTH)]
    language: Literal["en", "it"] = "en"


class PatchUser(Request, kw_only=True):
    name: Annotated[str, Meta(max_length=200)] | UnsetType = UNSET
    role: Literal["admin", "agent", "viewer"] | UnsetType = UNSET
    language: Literal["en", "it"] | UnsetType = UNSET


class User(Answer, kw_only=True):
    id: str
    email: str
    name: str
    role: str
    language: str
    created_at: Time


class UserList(Answer, kw_only=True):
    data: list[User]
    next_cursor: str | None


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["user_id"],
        email=row["email"],
        name=row["name"],
        role=row["role"],
        language=row["language"],
        created_at=row["created_at"],
    )


async def add_user(
    w: Write,
    actor: str,
    business_id: str,
    email: str,
    name: str,
    role: str,
    password: str,
    language: str = "en",
) -> User:
    """A new user (the caller checked the password's strength)."""
    user_id = "usr_" + secrets.token_hex(8)
    digest = await passwords.hashed(password)
    row = await w.conn.fetchrow(
        "INSERT INTO api_users (user_id, business_id, email, name, role, password_hash,"
        " language) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (email) DO NOTHING RETURNING *",
        user_id,
        business_id,
        email.lower(),
        name,
        role,
        digest,
        language,
    )
    if row is None:
        raise conflict("email_taken", "a user with this email exists")
    event = UserCreated(business_id=business_id, user_id=user_id, role=role, actor=actor)
    await directory.record(w, business_id, [new(event, "user-created", user_id)])
    return _user(row)


def check_password(password: str) -> None:
    if len(password) < passwords.MIN_LENGTH:
        raise invalid("password", f"at least {passwords.MIN_LENGTH} characters")


async def create_user(call: Call) -> Reply:
    body, data = await inputs.body(call.request, CreateUser)
    check_password(body.password)

    async def work(w: Write) -> Reply:
        user = await add_user(
            w, call.principal.actor, call.business_id, body.email, body.name, body.role,
            body.password, body.language,
        )  # fmt: skip
        return Reply(201, user)

    # An Idempotency-Key's body digest leaves the password out: an unsalted hash of it would
    # be kept beside the answer. The same key and email with another password is the same
    # request (the first answer).
    kept = {k: v for k, v in data.items() if k != "password"} if isinstance(data, dict) else data
    return await created(call, kept, work)


async def list_users(call: Call) -> Reply:
    limit, cursor = paging(call)
    after = cursors.decode(cursor, datetime, str)
    rows = await call.deps.pool.fetch(
        "SELECT * FROM api_users WHERE business_id = $1"
        " AND ($2::timestamptz IS NULL OR (created_at, user_id) < ($2, $3))"
        " ORDER BY created_at DESC, user_id DESC LIMIT $4",
        call.business_id,
        after[0] if after else None,
        after[1] if after else "",
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursors.encode(rows[-1]["created_at"], rows[-1]["user_id"]) if more else None
    return Reply(200, UserList(data=[_user(r) for r in rows], next_cursor=next_cursor))


async def update_user(call: Call) -> Reply:
    user_id = call.path("user_id", "user")
    body, _ = await inputs.body(call.request, PatchUser)
    changes = {
        name: getattr(body, name)
        for name in ("name", "role", "language")
        if getattr(body, name) is not msgspec.UNSET
    }
    async with write(call.deps.pool) as w:
        # The business's admins are locked first, so two admins demoting each other at the
        # same moment cannot both pass the check below.
        admins = await w.conn.fetch(
            "SELECT user_id FROM api_users WHERE business_id = $1 AND role = 'admin'"
            " ORDER BY user_id FOR UPDATE",
            call.business_id,
        )
        row = await w.conn.fetchrow(
            "SELECT * FROM api_users WHERE user_id = $1 AND business_id = $2 FOR UPDATE",
            user_id,
            call.business_id,
        )
        if row is None:
            raise not_found("user")
        demoted = row["role"] == "admin" and changes.get("role", "admin") != "admin"
        if demoted and len(admins) <= 1:
            raise conflict("last_admin", "the business's last admin cannot lose the role")
        if not changes:
            return Reply(200, _user(row))
        row = await w.conn.fetchrow(
            "UPDATE api_users SET name = $3, role = $4, language = $5"
            " WHERE user_id = $1 AND business_id = $2 RETURNING *",
            user_id,
            call.business_id,
            changes.get("name", row["name"]),
            changes.get("role", row["role"]),
            changes.get("language", row["language"]),
        )
        event = UserChanged(
            business_id=call.business_id,
            user_id=user_id,
            role=row["role"],
            actor=call.principal.actor,
        )
        await directory.record(w, call.business_id, [new(event)])
    return Reply(200, _user(row))


async def delete_user(call: Call) -> Reply:
    user_id = call.path("user_id", "user")
    async with write(call.deps.pool) as w:
        # The sessions go with the row (ON DELETE CASCADE): signed out at once.
        gone = await w.conn.fetchval(
            "DELETE FROM api_users WHERE user_id = $1 AND business_id = $2 RETURNING 1",
            user_id,
            call.business_id,
        )
        if not gone:
            raise not_found("user")
        event = UserDeleted(
            business_id=call.business_id, user_id=user_id, actor=call.principal.actor
        )
        await directory.record(w, call.business_id, [new(event, "user-deleted", user_id)])
    return Reply(204)


# --- sessions ------------------------------------------------------------------------------


async def sign_in(pool: asyncpg.Pool, email: str, password: str) -> tuple[str, str] | None:
    """A new session (cookie value, CSRF token) for the right email and password."""
    row = await pool.fetchrow(
        "SELECT user_id, password_hash FROM api_users WHERE email = $1", email.strip().lower()
    )
    if not await passwords.verified(password, row["password_hash"] if row else None):
        return None
    assert row is not None
    value, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    # The user's expired sessions go as a new one starts: the table keeps live ones only.
    await pool.execute(
        "DELETE FROM api_sessions WHERE user_id = $1 AND expires_at <= now()", row["user_id"]
    )
    await pool.execute(
        "INSERT INTO api_sessions (session_hash, user_id, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, $4)",
        session_hash(value),
        row["user_id"],
        csrf,
        datetime.now(UTC) + timedelta(hours=SESSION_HOURS),
    )
    return value, csrf


async def sign_out(pool: asyncpg.Pool, value: str, everywhere: bool = False) -> None:
    digest = session_hash(value)
    if everywhere:
        await pool.execute(
            "DELETE FROM api_sessions WHERE user_id ="
            " (SELECT user_id FROM api_sessions WHERE session_hash = $1)",
            digest,
        )
    else:
        await pool.execute("DELETE FROM api_sessions WHERE session_hash = $1", digest)


# --- make up -------------------------------------------------------------------------------

CONSOLE_ADMIN = "admin@localhost"


async def ensure_console_admin(pool: asyncpg.Pool, business_id: str, password: str) -> bool:
    """The default business's console user `admin@localhost` with CONSOLE_PASSWORD, created
    or given that password again (.env is the truth for it); True when created."""
    async with write(pool) as w:
        row = await w.conn.fetchrow(
            "SELECT password_hash FROM api_users WHERE email = $1", CONSOLE_ADMIN
        )
        if row is None:
            await add_user(w, "make-up", business_id, CONSOLE_ADMIN, "Admin", "admin", password)
            return True
        if not await passwords.verified(password, row["password_hash"]):
            await w.conn.execute(
                "UPDATE api_users SET password_hash = $2 WHERE email = $1",
                CONSOLE_ADMIN,
                await passwords.hashed(password),
            )
    return False
