"""Messages sealed on the broker. A message in flight carries what its consumer needs (a
customer's text, their number in a send), and RabbitMQ keeps it on its disk until it is
handled, in the dead letters for longer: with a MASTER_KEY, every body the bus publishes is
sealed with AES-256-GCM under a key derived from it (`transit v1`), and opened by the
consumer. Someone with the broker's files but not the key reads nothing.

A sealed body is `0x01 | nonce | ciphertext`: JSON never starts with that byte, so a body
published in clear (before sealing was on, by a tool, or a test) still opens as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.crypto.secrets import NONCE, KeyProvider, MasterKey
from shared.errors import PermanentError

SEALED = 0x01


class NotOurs(PermanentError):
    """A sealed body that does not open with this deployment's key (another MASTER_KEY)."""


class Transit:
    def __init__(self, keys: KeyProvider) -> None:
        self._aead = AESGCM(keys.key(b"transit v1"))
        self._route = keys.key(b"routing v1")

    def route(self, key: str) -> str:
        """A routing key that names nobody, for one built from a delivery's raw payload
        (ingress: the number and the sender's id): the same key always gives the same one,
        which is all the consistent-hash exchange needs."""
        return "r." + hmac.new(self._route, key.encode(), hashlib.sha256).hexdigest()[:32]

    def seal(self, body: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return bytes([SEALED]) + nonce + self._aead.encrypt(nonce, body, None)

    def open(self, body: bytes) -> bytes:
        if not is_sealed(body):
            return body
        try:
            return self._aead.decrypt(body[1 : 1 + NONCE], body[1 + NONCE :], None)
        except InvalidTag as exc:
            raise NotOurs("a sealed message that does not open with this MASTER_KEY") from exc


def is_sealed(body: bytes) -> bool:
    return bool(body) and body[0] == SEALED


def transit_for(master_key: str) -> Transit | None:
    """The deployment's transit cipher (None without a MASTER_KEY: bodies go in clear)."""
    return Transit(MasterKey(master_key)) if master_key else None


def opened(transit: Transit | None, body: bytes) -> bytes:
    """The body in clear: opened when sealed (a sealed body and no key: NotOurs)."""
    if transit is None:
        if is_sealed(body):
            raise NotOurs("a sealed message, and no MASTER_KEY to open it")
        return body
    return transit.open(body)
