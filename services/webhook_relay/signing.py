"""Standard Webhooks signatures (https://www.standardwebhooks.com). Pure.

`webhook-signature` holds one `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` per active
secret, space-separated: during a secret rotation the CRM may verify with either secret.
Secrets are `whsec_<base64 of the key bytes>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets

PREFIX = "whsec_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


class InvalidSecret(ValueError):
    pass


def generate_secret(key_bytes: int = 32) -> str:
    return PREFIX + base64.b64encode(_secrets.token_bytes(key_bytes)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key: the decoded part after `whsec_`."""
    if not secret.startswith(PREFIX):
        raise InvalidSecret("a secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("the part after whsec_ is not base64") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidSecret(f"the key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def fingerprint(secret: str) -> str:
    """Tells secrets apart in events and listings without revealing them."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]
