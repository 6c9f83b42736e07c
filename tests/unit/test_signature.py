"""Meta's X-Hub-Signature-256 check."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from shared.meta.signature import is_valid, sign
from tests.support import pywa

SECRET = "app-secret"
BODY = json.dumps(pywa.payload("message:text")).encode()


def meta_header(secret: str, body: bytes) -> str:
    """What Meta sends, computed independently of the code under test."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_sign_matches_meta() -> None:
    assert sign(SECRET, BODY) == meta_header(SECRET, BODY)


def test_valid_signature_is_accepted() -> None:
    assert is_valid(SECRET, BODY, meta_header(SECRET, BODY))


def test_surrounding_whitespace_in_the_header_is_tolerated() -> None:
    assert is_valid(SECRET, BODY, f" {meta_header(SECRET, BODY)}\r\n")


def test_wrong_secret_is_rejected() -> None:
    assert not is_valid(SECRET, BODY, meta_header("other-secret", BODY))


def test_tampered_body_is_rejected() -> None:
    header = meta_header(SECRET, BODY)
    assert not is_valid(SECRET, BODY.replace(b"Body Text", b"Body Texx"), header)
    assert not is_valid(SECRET, BODY + b" ", header)


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header_is_rejected(header: str | None) -> None:
    assert not is_valid(SECRET, BODY, header)


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "sha256=",
        "sha256=zz",
        "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest(),
        hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest(),  # no "sha256=" prefix
        "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()[:-2],
        "sha256=" + "é" * 64,
    ],
)
def test_malformed_header_is_rejected(header: str) -> None:
    assert not is_valid(SECRET, BODY, header)


def test_no_secret_configured_rejects_everything() -> None:
    assert not is_valid("", BODY, meta_header("", BODY))


def test_a_header_that_is_not_utf8_is_invalid_not_an_error() -> None:
    # aiohttp hands undecodable header bytes over as surrogates.
    assert not is_valid(SECRET, BODY, "sha256=\udcff\udcfe")
    assert not is_valid(SECRET, BODY, "sha256=ÿþ")
