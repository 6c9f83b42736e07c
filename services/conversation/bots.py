"""Which bot answers a number's customers: the definition the business published for it (the
version a customer's flow started with, while the flow lasts), or, for a number with none
when no LLM is configured, the shipped default bot (deploy/bots/default.yaml). With an LLM
key and nothing published, there is no bot: the LLM answers every message (bot-v1.md).

Definitions are read from the number's `bot-<phone_number_id>` stream (the api its only
writer) and kept, parsed, by (number, version). Which version is current: the directory's
`bot_version`, or the stream's newest event when that is newer. The stream's new events are
read before every answer (one indexed read, usually empty), so the message after a publish
answered 200 follows the new version, without waiting for the directory's reload.
"""

from __future__ import annotations

import logging
from pathlib import Path

from shared.bot import Bot, InvalidDefinition, load
from shared.events.business import BotPublished, bot_stream
from shared.eventstore import EventStore

log = logging.getLogger("conversation.bots")
DEFAULT_BOT = Path(__file__).resolve().parents[2] / "deploy" / "bots" / "default.yaml"


class Bots:
    def __init__(self, store: EventStore, default: Bot | None) -> None:
        self.store = store
        self.default = default
        self._parsed: dict[tuple[str, int], Bot] = {}
        self._seen: dict[str, tuple[int, int]] = {}  # number -> (events read, newest version)

    @classmethod
    def for_settings(cls, store: EventStore, llm_configured: bool) -> Bots:
        return cls(store, None if llm_configured else load(DEFAULT_BOT.read_text()))

    async def bot(self, phone_number_id: str, current: int, started: int = 0) -> Bot | None:
        """The bot for a number whose published version is `current` (0: none); `started`:
        the version the customer's flow began with, used while it exists."""
        current = max(current, await self.newest(phone_number_id))
        for version in (started, current):
            if version:
                found = await self._version(phone_number_id, version)
                if found is not None:
                    return found
        return self.default

    async def newest(self, phone_number_id: str) -> int:
        """The newest version published in the number's stream (0: none)."""
        read, newest = self._seen.get(phone_number_id, (0, 0))
        latest = None
        for recorded in await self.store.read_stream(bot_stream(phone_number_id), read):
            read = recorded.version + 1
            event = recorded.event
            if isinstance(event, BotPublished) and event.version > newest:
                newest, latest = event.version, event
        if latest is not None:
            self._keep(phone_number_id, latest)  # older versions: parsed when a flow needs one
        self._seen[phone_number_id] = (read, newest)
        return newest

    def _keep(self, phone_number_id: str, event: BotPublished) -> None:
        key = (phone_number_id, event.version)
        if key in self._parsed:
            return
        try:
            self._parsed[key] = load(event.source, revision=event.version)
        except InvalidDefinition:
            # It was valid when published: a newer parser refusing it is a bug.
            log.error("a published bot does not load", extra={"fields": {"version": event.version}})

    async def _version(self, phone_number_id: str, version: int) -> Bot | None:
        key = (phone_number_id, version)
        if key not in self._parsed:
            for recorded in await self.store.read_stream(bot_stream(phone_number_id)):
                event = recorded.event
                if isinstance(event, BotPublished) and event.version == version:
                    self._keep(phone_number_id, event)
                    break
        return self._parsed.get(key)
