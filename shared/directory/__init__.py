"""Businesses and numbers as every service reads them: who owns a number, its token and its
persona, model, voice and send rate, and the Meta apps whose signatures ingress accepts.

The api writes the directory's tables in the same transaction as the business's events
(decision 0007). Readers keep a copy in memory, reloaded every RELOAD_SECONDS through their
pool (the tables are small; no connection is held for LISTEN, which would cost every
process one more connection), and look a number up in the database when the copy does not
have it (no negative cache), so a number registered a moment ago is found.

With no default business registered yet, the environment is the default business (id
`default`): its number is `WHATSAPP_PHONE_NUMBER_ID`, or, when that is empty, every number no
business registered, with `WHATSAPP_ACCESS_TOKEN` and the other `WHATSAPP_*` and bot settings.
That is the product with no setup at all, and what `make up` registers on a first run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from shared.config import Settings
from shared.crypto.secrets import MasterKey, SecretBox, SecretError
from shared.eventstore.postgres import connection

log = logging.getLogger("directory")
DEFAULT_BUSINESS = "default"
RELOAD_SECONDS = 2.0
# How long a number a point query found is kept aside for the reloads that may have read
# before it was registered (and would otherwise drop it from memory when they finish).
FOUND_KEPT_SECONDS = 60.0


@dataclass(frozen=True)
class Number:
    phone_number_id: str
    business_id: str
    waba_id: str = ""
    display_phone_number: str = ""
    send_rate_per_second: float = 80.0
    persona: str = ""
    llm_model: str = ""
    voice_id: str = ""
    bot_version: int = 0  # the number's published bot definition (0: none)
    access_token: str = field(default="", repr=False)
    app_secret: str = field(default="", repr=False)  # "" : the deployment's own app
    verify_token: str = field(default="", repr=False)

    @property
    def app(self) -> str:
        """Which Meta app signs this number's webhooks (a fingerprint, never the secret)."""
        return app_id(self.app_secret) if self.app_secret else "default"


def app_id(secret: str) -> str:
    return "app_" + hashlib.sha256(secret.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AppSecret:
    app: str  # `default`, or app_<fingerprint>
    secret: str = field(repr=False)


@dataclass
class Snapshot:
    numbers: dict[str, Number] = field(default_factory=dict)
    wabas: dict[str, str] = field(default_factory=dict)  # waba_id -> business_id
    businesses: set[str] = field(default_factory=set)
    default_registered: bool = False


def secret_owner(phone_number_id: str) -> str:
    return f"number:{phone_number_id}"


def secret_context(phone_number_id: str, name: str) -> str:
    """What a number's sealed secret is bound to: its row (owner and name)."""
    return f"{secret_owner(phone_number_id)}/{name}"


class Directory:
    def __init__(self, settings: Settings, pool: asyncpg.Pool | None) -> None:
        self.settings = settings
        self.pool = pool
        self.box = SecretBox(MasterKey(settings.master_key)) if settings.master_key else None
        self.snapshot = Snapshot()
        self._task: asyncio.Task[None] | None = None
        self._reload_requested = asyncio.Event()
        self.reloads = 0
        self._found: dict[str, tuple[float, Number]] = {}  # by point queries: when, what

    # --- reading -------------------------------------------------------------------------

    def environment_number(self, phone_number_id: str) -> Number:
        """The default business's number as the environment describes it."""
        s = self.settings
        return Number(
            phone_number_id=phone_number_id,
            business_id=DEFAULT_BUSINESS,
            send_rate_per_second=s.whatsapp_rate_per_second,
            access_token=s.whatsapp_access_token,
            verify_token=s.whatsapp_verify_token,
        )

    def _catch_all(self, phone_number_id: str) -> Number | None:
        """A number nobody registered: the default business's when it answers every number
        (no WHATSAPP_PHONE_NUMBER_ID), or when it is the one the environment names."""
        pinned = self.settings.whatsapp_phone_number_id
        if pinned and pinned != phone_number_id:
            return None
        return self.environment_number(phone_number_id)

    def cached(self, phone_number_id: str) -> Number | None:
        """From memory only (no I/O): the registered number, or the default business's."""
        return self.snapshot.numbers.get(phone_number_id) or self._catch_all(phone_number_id)

    async def number(self, phone_number_id: str) -> Number | None:
        """The number, looked up in the database when memory does not have it."""
        found = self.snapshot.numbers.get(phone_number_id)
        if found is None and self.pool is not None:
            found = await self._load_number(phone_number_id)
            if found is not None:
                self.snapshot.numbers[phone_number_id] = found
                self._found[phone_number_id] = (time.monotonic(), found)
        return found or self._catch_all(phone_number_id)

    def business_of_waba(self, waba_id: str) -> str | None:
        return self.snapshot.wabas.get(waba_id) or (
            DEFAULT_BUSINESS if not self.settings.whatsapp_phone_number_id else None
        )

    def app_secrets(self) -> list[AppSecret]:
        """Every secret a webhook may be signed with: the deployment's, then the numbers'."""
        out = []
        if self.settings.whatsapp_app_secret:
            out.append(AppSecret("default", self.settings.whatsapp_app_secret))
        seen = {a.app for a in out}
        for number in self.snapshot.numbers.values():
            if number.app_secret and number.app not in seen:
                seen.add(number.app)
                out.append(AppSecret(number.app, number.app_secret))
        return out

    def verify_tokens(self) -> list[str]:
        tokens = (
            [self.settings.whatsapp_verify_token] if self.settings.whatsapp_verify_token else []
        )
        tokens += [n.verify_token for n in self.snapshot.numbers.values() if n.verify_token]
        return tokens

    # --- loading -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load, then keep fresh in the background, every RELOAD_SECONDS. A database away at
        start leaves the environment's default until it is back."""
        if self.pool is None:
            return
        with contextlib.suppress(Exception):
            await self.reload()
        self._task = asyncio.create_task(self.start_following())

    async def start_following(self) -> None:
        """Keep the copy fresh until cancelled (a service's background task)."""
        if self.pool is not None:
            self._reload_requested.set()  # load at once
            await self._follow()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def request_reload(self) -> None:
        self._reload_requested.set()

    async def _follow(self) -> None:
        while True:
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reload_requested.wait(), RELOAD_SECONDS)
                self._reload_requested.clear()
                await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database away: keep the copy we have, try again shortly.
                log.warning(
                    "directory reload failed", extra={"fields": {"error": type(exc).__name__}}
                )
                await asyncio.sleep(1.0)

    async def reload(self) -> None:
        assert self.pool is not None
        began = time.monotonic()
        async with connection(self.pool) as conn:
            rows = await conn.fetch(_NUMBERS)
            wabas = await conn.fetch("SELECT waba_id, business_id FROM directory_wabas")
            businesses = await conn.fetch(
                "SELECT business_id, is_default FROM directory_businesses"
            )
        numbers = {r["phone_number_id"]: self._number(r) for r in rows}
        # A number a point query found while this read was under way may have been
        # registered after the read began: kept, not dropped until the next reload.
        for key, (at, number) in list(self._found.items()):
            if at >= began:
                numbers.setdefault(key, number)
            elif at < began - FOUND_KEPT_SECONDS:
                del self._found[key]
        snapshot = Snapshot(
            numbers=numbers,
            wabas={r["waba_id"]: r["business_id"] for r in wabas},
            businesses={r["business_id"] for r in businesses},
            default_registered=any(r["is_default"] for r in businesses),
        )
        self.snapshot = snapshot
        self.reloads += 1
        log.debug("directory loaded", extra={"fields": {"seconds": time.monotonic() - began}})

    async def _load_number(self, phone_number_id: str) -> Number | None:
        assert self.pool is not None
        # The database away is an outage for the message asking (it waits and retries), never
        # "nobody registered it": that would answer a registered number as the default one.
        async with connection(self.pool) as conn:
            row = await conn.fetchrow(_NUMBERS + " WHERE n.phone_number_id = $1", phone_number_id)
        return self._number(row) if row else None

    def _number(self, row: Any) -> Number:
        number = Number(
            phone_number_id=row["phone_number_id"],
            business_id=row["business_id"],
            waba_id=row["waba_id"],
            display_phone_number=row["display_phone_number"],
            send_rate_per_second=row["send_rate_per_second"],
            persona=row["persona"],
            llm_model=row["llm_model"],
            voice_id=row["voice_id"],
            bot_version=row["bot_version"],
        )
        sealed = row["sealed_b64"] or {}
        opened = {
            name: self._open(number.phone_number_id, name, base64.b64decode(box))
            for name, box in sealed.items()
        }
        return replace(
            number,
            access_token=opened.get("access_token", ""),
            app_secret=opened.get("app_secret", ""),
            verify_token=opened.get("verify_token", ""),
        )

    def _open(self, phone_number_id: str, name: str, box: bytes) -> str:
        if self.box is None:
            log.error("a sealed secret but no MASTER_KEY", extra={"fields": {"secret": name}})
            return ""
        try:
            return self.box.open(box, secret_context(phone_number_id, name))
        except SecretError:
            log.error("a secret does not open with MASTER_KEY", extra={"fields": {"secret": name}})
            return ""


# The numbers with their sealed secrets (name -> box), one row each.
_NUMBERS = """
SELECT n.phone_number_id, n.business_id, n.waba_id, n.display_phone_number,
       n.send_rate_per_second, n.persona, n.llm_model, n.voice_id, n.bot_version,
       (SELECT jsonb_object_agg(s.name, encode(s.sealed, 'base64')) FROM secrets s
         WHERE s.owner = 'number:' || n.phone_number_id) AS sealed_b64
  FROM directory_numbers n
"""
