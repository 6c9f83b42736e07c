"""The event store's cipher: the data of every event about a customer is sealed with that
customer's data key (`KeyRing`) before it is stored, and opened when it is read.

Whose data it is (the subject) is decided from the event alone: the conversation it names
(`conversation_id`, or the stream's id for `inbox-` and `conversation-` streams), else the
stream itself (a customer's `identity-` and `contact-` streams, a message's stream with no
conversation named). Events of other categories (businesses, numbers, bots, CRM endpoints,
accounts) hold nothing of a customer and stay in clear.

A sealed row's data is `{"_k": <key id>, "_c": <base64 of nonce and ciphertext>}`: the whole
data, so that nothing personal is left beside it; the key id is a keyed pseudonym. A row
written before encryption was on is read as it is.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag

from shared.crypto.datakeys import KeyRing
from shared.crypto.secrets import NONCE
from shared.errors import PermanentError

KEY = "_k"
SEALED = "_c"
ERASED_KEY = "erased"  # what an erasure leaves as the key id of its rows

# Categories whose events are about one customer.
PERSONAL = frozenset(
    {
        "inbox",
        "conversation",
        "identity",
        "contact",
        "request",
        "message",
        "media",
        "voice",
        "outbox",
    }
)
# Where the stream's id is the conversation's id.
CONVERSATION_STREAMS = frozenset({"inbox", "conversation"})

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class ErasedData(PermanentError):
    """The row's key was destroyed: its customer was erased. Raised when reading (the
    mapper makes the row `Erased`) and when writing for an erased subject: what was still
    on its way for that customer is dropped, never stored under a new key."""


def subject_of(stream: str, data: dict[str, Any]) -> str | None:
    """Whose key seals this event's data; None: not personal."""
    category, _, rest = stream.partition("-")
    if category not in PERSONAL:
        return None
    conversation = data.get("conversation_id")
    if isinstance(conversation, str) and conversation:
        return "conversation:" + conversation
    if category in CONVERSATION_STREAMS:
        return "conversation:" + rest
    return "stream:" + stream


def conversation_subject(conversation_id: str) -> str:
    return "conversation:" + conversation_id


def stream_subject(stream: str) -> str:
    return "stream:" + stream


def key_id_of(data: dict[str, Any]) -> str | None:
    """The key id a stored row is sealed under (None: a row in clear)."""
    key = data.get(KEY) if len(data) == 2 else None
    return key if isinstance(key, str) and SEALED in data else None


class PersonalCipher:
    """The mapper's `Cipher`. Synchronous: the store loads the keys it will need first
    (`KeyRing.load`), so sealing and opening never wait on the database.

    With `seal=False` (PRIVACY_ENCRYPTION off) data is stored in clear, but the keys are
    still made and checked: a write for an erased subject is refused all the same, which is
    how a process that remembers an erased customer learns of the erasure."""

    def __init__(self, ring: KeyRing, seal: bool = True) -> None:
        self.ring = ring
        self.seal = seal

    def key_id_for(self, stream: str, data: dict[str, Any]) -> str | None:
        subject = subject_of(stream, data)
        return None if subject is None else self.ring.key_id(subject)

    async def load(self, conn: Any, key_ids: set[str], create: bool) -> None:
        await self.ring.load(conn, key_ids, create)

    def encrypt(self, stream: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        key_id = self.key_id_for(stream, data)
        if key_id is None:
            return data
        aead = self.ring.cached(key_id)
        if aead is None:
            raise ErasedData("the subject's key was destroyed and not made again")
        if not self.seal:
            return data
        nonce = os.urandom(NONCE)
        sealed = aead.encrypt(nonce, _encode(data), f"{type_}\x1f{key_id}".encode())
        return {KEY: key_id, SEALED: base64.b64encode(nonce + sealed).decode()}

    def decrypt(self, stream: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        key_id = key_id_of(data)
        if key_id is None:
            return data  # written in clear (before encryption was on, or not personal)
        if key_id == ERASED_KEY:
            raise ErasedData("erased")
        aead = self.ring.cached(key_id)
        if aead is None:
            raise ErasedData("erased")
        raw = base64.b64decode(data[SEALED])
        try:
            plain = aead.decrypt(raw[:NONCE], raw[NONCE:], f"{type_}\x1f{key_id}".encode())
        except InvalidTag as exc:  # tampered with, or sealed for another row
            raise ValueError("the row does not open with its subject's key") from exc
        result: dict[str, Any] = _decode(plain)
        return result


async def mapper_with_keys(conn: Any, master_key: str) -> Any:
    """A mapper that opens what the deployment sealed: its keys, read with `master_key` on
    `conn`. For tools and tests that read the event store from outside the services (the
    services install theirs: `shared.runtime.install_privacy`)."""
    from shared import events
    from shared.crypto.secrets import MasterKey
    from shared.eventstore.mapper import Mapper

    ring = await KeyRing(MasterKey(master_key)).start(conn)
    return Mapper(events.ALL, events.UPCASTERS, PersonalCipher(ring))
