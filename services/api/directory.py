"""The directory's one writer: businesses, their numbers and their API keys.

Each change is an event in `business-<id>` (shared/events/business.py) and, in the same
transaction, the directory's tables (migration 0005) and `NOTIFY directory`, so every reader
(shared/directory) sees it the moment it commits: a number is routable as soon as its 201
is sent. Secrets (access token, app secret, verify token) are sealed into `secrets`, bound
to their row, and never appear in an event, an answer or a log; API keys are kept as their
SHA-256 hash. Writers of one business are ordered by a lock on its row, and its stream's
version is checked on every append.

`ensure_default_business` is what `make up` calls: the default business from the
environment, created once, its number brought up to date with the environment every time,
and the shipped default bot published for it when it has none and no LLM key is set.
"""

from __future__ import annotations

import logging
import secrets as _secrets
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from services.api.auth import new_key
from services.api.errors import ApiError, conflict, not_found
from services.api.schemas import CreateNumber, PatchNumber
from services.api.writes import Write, write
from shared.config import Settings
from shared.crypto.secrets import MasterKey, SecretBox, SecretError
from shared.directory import DEFAULT_BUSINESS, secret_context, secret_owner
from shared.events.business import (
    ApiKeyIssued,
    ApiKeyRevoked,
    BusinessCreated,
    NumberRegistered,
    NumberUpdated,
    business_stream,
)
from shared.eventstore import NO_STREAM, Event, NewEvent, new

log = logging.getLogger("api.directory")
SECRETS = ("access_token", "app_secret", "verify_token")
MAKE_UP = "make-up"
_DEFAULT_LOCK = 7243088  # two `make up`s at once create one default business
_SETTINGS = ("waba_id", "display_phone_number", "send_rate_per_second", "persona")
_SETTINGS += ("llm_model", "voice_id")


@dataclass(frozen=True)
class Actor:
    """Who writes: the event's `actor` field and the metadata naming key id and role."""

    name: str
    metadata: dict[str, str]


MAKE_UP_ACTOR = Actor(MAKE_UP, {"actor": MAKE_UP})


def new_business_id() -> str:
    return "biz_" + _secrets.token_hex(8)


async def _notify(w: Write) -> None:
    await w.conn.execute("SELECT pg_notify('directory', '')")


async def _append(w: Write, business_id: str, version: int, event: Event, actor: Actor) -> int:
    """Appends to the business's stream at `version`; returns the stream's new version."""
    appended = await w.append(
        business_stream(business_id), [new(event, metadata=actor.metadata)], version
    )
    new_version = appended[-1].stream_version
    await w.conn.execute(
        "UPDATE directory_businesses SET version = $2, updated_at = now() WHERE business_id = $1",
        business_id,
        new_version,
    )
    return new_version


async def record(w: Write, business_id: str, events: list[NewEvent]) -> None:
    """Appends events of another module (users, retention) to the business's stream, at the
    version the directory keeps: an append that left that version behind made the next
    directory write (a key, a number) fail its expected version."""
    version = await _lock(w, business_id)
    appended = await w.append(business_stream(business_id), events, version)
    await w.conn.execute(  # never back: a duplicate reports the version it was stored at
        "UPDATE directory_businesses SET version = GREATEST(version, $2), updated_at = now()"
        " WHERE business_id = $1",
        business_id,
        max(a.stream_version for a in appended),
    )


async def _lock(w: Write, business_id: str) -> int:
    """The business's stream version, its row locked until the write commits (404: none)."""
    version = await w.conn.fetchval(
        "SELECT version FROM directory_businesses WHERE business_id = $1 FOR UPDATE",
        business_id,
    )
    if version is None:
        raise not_found("business")
    return int(version)


# --- businesses ----------------------------------------------------------------------------


async def create_business(
    w: Write,
    actor: Actor,
    *,
    name: str,
    messaging_limit: int | None = None,
    daily_send_quota: int | None = None,
    business_id: str | None = None,
    default: bool = False,
) -> str:
    business_id = business_id or new_business_id()
    event = BusinessCreated(
        business_id=business_id,
        name=name,
        messaging_limit=messaging_limit,
        default=default,
        daily_send_quota=daily_send_quota,
        actor=actor.name,
    )
    appended = await w.append(
        business_stream(business_id), [new(event, metadata=actor.metadata)], NO_STREAM
    )
    await w.conn.execute(
        "INSERT INTO directory_businesses (business_id, name, messaging_limit, is_default,"
        " daily_send_quota, version, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, now(), now())",
        business_id,
        name,
        messaging_limit,
        default,
        daily_send_quota,
        appended[-1].stream_version,
    )
    await _notify(w)
    return business_id


# --- numbers -------------------------------------------------------------------------------


async def _claim_waba(w: Write, business_id: str, waba_id: str) -> None:
    """One WABA, one business: 409 waba_taken when another business has it."""
    if not waba_id:
        return
    await w.conn.execute(
        "INSERT INTO directory_wabas (waba_id, business_id) VALUES ($1, $2)"
        " ON CONFLICT (waba_id) DO NOTHING",
        waba_id,
        business_id,
    )
    owner = await w.conn.fetchval(
        "SELECT business_id FROM directory_wabas WHERE waba_id = $1", waba_id
    )
    if owner != business_id:
        raise conflict("waba_taken", "this WABA belongs to another business")


async def _put_secret(w: Write, box: SecretBox, number: str, name: str, value: str) -> None:
    await w.conn.execute(
        "INSERT INTO secrets (owner, name, sealed, updated_at) VALUES ($1, $2, $3, now())"
        " ON CONFLICT (owner, name) DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = now()",
        secret_owner(number),
        name,
        box.seal(value, secret_context(number, name)),
    )


async def _drop_secret(w: Write, number: str, name: str) -> None:
    await w.conn.execute(
        "DELETE FROM secrets WHERE owner = $1 AND name = $2", secret_owner(number), name
    )


async def register_number(
    w: Write, box: SecretBox, actor: Actor, business_id: str, body: CreateNumber
) -> None:
    version = await _lock(w, business_id)
    number = body.phone_number_id
    taken = await w.conn.fetchval(
        "SELECT 1 FROM directory_numbers WHERE phone_number_id = $1", number
    )
    if taken:
        raise conflict("number_taken", "this phone_number_id is registered already")
    await _claim_waba(w, business_id, body.waba_id)
    event = NumberRegistered(
        business_id=business_id,
        phone_number_id=number,
        waba_id=body.waba_id,
        display_phone_number=body.display_phone_number,
        send_rate_per_second=body.send_rate_per_second,
        persona=body.persona,
        llm_model=body.llm_model,
        voice_id=body.voice_id,
        own_app=body.app_secret is not None,
        actor=actor.name,
    )
    await _append(w, business_id, version, event, actor)
    try:
        await w.conn.execute(
            "INSERT INTO directory_numbers (phone_number_id, business_id, waba_id,"
            " display_phone_number, send_rate_per_second, persona, llm_model, voice_id,"
            " own_app, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), now())",
            number,
            business_id,
            body.waba_id,
            body.display_phone_number,
            body.send_rate_per_second,
            body.persona,
            body.llm_model,
            body.voice_id,
            body.app_secret is not None,
        )
    except asyncpg.UniqueViolationError:
        # Registered by another business in the meantime: this whole write is undone.
        raise conflict("number_taken", "this phone_number_id is registered already") from None
    for name in SECRETS:
        value = getattr(body, name)
        if value:
            await _put_secret(w, box, number, name, value)
    await _notify(w)


async def update_number(
    w: Write,
    box: SecretBox,
    actor: Actor,
    business_id: str,
    number: str,
    patch: PatchNumber,
) -> None:
    version = await _lock(w, business_id)
    row = await w.conn.fetchrow(
        "SELECT * FROM directory_numbers WHERE phone_number_id = $1 AND business_id = $2",
        number,
        business_id,
    )
    if row is None:
        raise not_found("number")
    changed: dict[str, Any] = {}
    for name in _SETTINGS:
        value = getattr(patch, name)
        if value is not msgspec.UNSET and value != row[name]:
            changed[name] = value
    if "waba_id" in changed:
        await _claim_waba(w, business_id, changed["waba_id"])
    secrets_changed = []
    for name in SECRETS:
        value = getattr(patch, name)
        if value is msgspec.UNSET:
            continue
        secrets_changed.append(name)
        if value is None:
            await _drop_secret(w, number, name)
        else:
            await _put_secret(w, box, number, name, value)
    if patch.app_secret is not msgspec.UNSET and (patch.app_secret is not None) != row["own_app"]:
        changed["own_app"] = patch.app_secret is not None
    if not changed and not secrets_changed:
        return  # nothing to record
    event = NumberUpdated(
        business_id=business_id,
        phone_number_id=number,
        secrets_changed=secrets_changed,
        actor=actor.name,
        **changed,
    )
    await _append(w, business_id, version, event, actor)
    if changed:
        columns = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(changed))
        await w.conn.execute(
            f"UPDATE directory_numbers SET {columns}, updated_at = now()"
            " WHERE phone_number_id = $1",
            number,
            *changed.values(),
        )
    else:
        await w.conn.execute(
            "UPDATE directory_numbers SET updated_at = now() WHERE phone_number_id = $1", number
        )
    await _notify(w)


# --- keys ----------------------------------------------------------------------------------


async def issue_key(
    w: Write, actor: Actor, business_id: str, name: str, role: str
) -> tuple[str, str]:
    """Returns (key id, the key): the key is shown once, only its hash is kept."""
    version = await _lock(w, business_id)
    key_id, key, key_hash = new_key()
    event = ApiKeyIssued(
        business_id=business_id,
        key_id=key_id,
        name=name,
        role=role,
        key_hash=key_hash,
        actor=actor.name,
    )
    await _append(w, business_id, version, event, actor)
    await w.conn.execute(
        "INSERT INTO api_keys (key_id, business_id, name, role, key_hash, created_at)"
        " VALUES ($1, $2, $3, $4, $5, now())",
        key_id,
        business_id,
        name,
        role,
        key_hash,
    )
    await _notify(w)
    return key_id, key


async def revoke_key(w: Write, actor: Actor, business_id: str, key_id: str) -> None:
    """Refused from then on; revoking a revoked key again changes nothing."""
    version = await _lock(w, business_id)
    row = await w.conn.fetchrow(
        "SELECT revoked_at FROM api_keys WHERE key_id = $1 AND business_id = $2",
        key_id,
        business_id,
    )
    if row is None:
        raise not_found("API key")
    if row["revoked_at"] is not None:
        return
    event = ApiKeyRevoked(business_id=business_id, key_id=key_id, actor=actor.name)
    await _append(w, business_id, version, event, actor)
    await w.conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", key_id)
    await _notify(w)


# --- the default business ------------------------------------------------------------------


async def ensure_default_business(pool: asyncpg.Pool, settings: Settings) -> tuple[str, str | None]:
    """The default business (id `default`), created from the environment when there is none,
    with a fresh admin key (returned: the caller writes it to .env as API_KEY; None when the
    business existed). Every call brings its number (WHATSAPP_PHONE_NUMBER_ID, if set) up
    to date with the environment: WABA, token, send rate and persona."""
    box = SecretBox(MasterKey(settings.master_key))
    key = None
    async with write(pool) as w:
        await w.conn.execute("SELECT pg_advisory_xact_lock($1)", _DEFAULT_LOCK)
        business_id = await w.conn.fetchval(
            "SELECT business_id FROM directory_businesses WHERE is_default"
        )
        if business_id is None:
            business_id = await create_business(
                w,
                MAKE_UP_ACTOR,
                name=settings.default_business_name,
                business_id=DEFAULT_BUSINESS,
                default=True,
            )
            _, key = await issue_key(w, MAKE_UP_ACTOR, business_id, "make up", "admin")
        if settings.whatsapp_phone_number_id:
            await _sync_default_number(w, box, business_id, settings)
            if not settings.openai_api_key:
                await _install_default_bot(w, business_id, settings.whatsapp_phone_number_id)
    return business_id, key


async def _install_default_bot(w: Write, business_id: str, number: str) -> None:
    """bot-v1: the shipped example bot for the default number, when it has none and no LLM
    key is configured (with a key, the LLM answers a number with no bot)."""
    from services.api import botpublish  # it builds on this module's Actor

    version = await w.conn.fetchval(
        "SELECT bot_version FROM directory_numbers WHERE phone_number_id = $1 AND business_id = $2",
        number,
        business_id,
    )
    if version == 0:
        text = botpublish.DEFAULT_BOT.read_text()
        await botpublish.publish(w, MAKE_UP_ACTOR, business_id, number, text, "application/yaml")


def _environment_number(settings: Settings) -> CreateNumber:
    return CreateNumber(
        phone_number_id=settings.whatsapp_phone_number_id,
        waba_id=settings.whatsapp_waba_id,
        access_token=settings.whatsapp_access_token,
        send_rate_per_second=settings.whatsapp_rate_per_second,
        # Set in the environment only: "" leaves the number on BOT_PERSONA, whatever it is.
        persona=settings.extra.get("BOT_PERSONA", ""),
    )


async def _sync_default_number(
    w: Write, box: SecretBox, business_id: str, settings: Settings
) -> None:
    wanted = _environment_number(settings)
    owner = await w.conn.fetchval(
        "SELECT business_id FROM directory_numbers WHERE phone_number_id = $1",
        wanted.phone_number_id,
    )
    try:
        # A savepoint: a refusal (a WABA another business has) leaves the rest standing.
        async with w.conn.transaction():
            await _bring_up_to_date(w, box, business_id, owner, wanted)
    except ApiError as exc:
        log.warning(
            "the default number could not be brought up to date",
            extra={"fields": {"code": exc.code}},
        )


async def _bring_up_to_date(
    w: Write, box: SecretBox, business_id: str, owner: str | None, wanted: CreateNumber
) -> None:
    number = wanted.phone_number_id
    if owner is None:
        await register_number(w, box, MAKE_UP_ACTOR, business_id, wanted)
        return
    if owner != business_id:
        log.warning(
            "WHATSAPP_PHONE_NUMBER_ID belongs to another business: left as it is",
            extra={"fields": {"business_id": owner}},
        )
        return
    row = await w.conn.fetchrow(
        "SELECT waba_id, send_rate_per_second, persona FROM directory_numbers"
        " WHERE phone_number_id = $1",
        number,
    )
    patch = PatchNumber(
        waba_id=wanted.waba_id if wanted.waba_id != row["waba_id"] else msgspec.UNSET,
        send_rate_per_second=(
            wanted.send_rate_per_second
            if wanted.send_rate_per_second != row["send_rate_per_second"]
            else msgspec.UNSET
        ),
        persona=wanted.persona if wanted.persona != row["persona"] else msgspec.UNSET,
        access_token=(
            wanted.access_token
            if wanted.access_token != await _opened(w, box, number, "access_token")
            else msgspec.UNSET
        ),
    )
    await update_number(w, box, MAKE_UP_ACTOR, business_id, number, patch)


async def _opened(w: Write, box: SecretBox, number: str, name: str) -> str:
    sealed = await w.conn.fetchval(
        "SELECT sealed FROM secrets WHERE owner = $1 AND name = $2", secret_owner(number), name
    )
    if sealed is None:
        return ""
    try:
        return box.open(bytes(sealed), secret_context(number, name))
    except SecretError:
        return "\x00unopenable"  # differs from any token: it is sealed again
