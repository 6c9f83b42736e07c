"""The console's pure parts: password hashes, the sign-in limiter, and pages that escape
whatever they show."""

from __future__ import annotations

import pytest

from services.api import passwords
from services.api.console import pages

FAST = 2**10  # the tests' own cost: the format and the checks, not the work factor


def test_a_hash_checks_its_password_only_and_names_its_parameters() -> None:
    stored = passwords.hash_password("correct horse battery", n=FAST)
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(FAST), "8", str(passwords.P))
    assert salt and digest and "correct" not in stored
    assert passwords.verify_password("correct horse battery", stored)
    assert not passwords.verify_password("correct horse batterY", stored)
    # A random salt each time: the same password never hashes the same.
    assert passwords.hash_password("correct horse battery", n=FAST) != stored


@pytest.mark.parametrize(
    "stored",
    ["", "scrypt$1$2", "bcrypt$x$y$z$a$b", "scrypt$notanumber$8$1$aa$bb", "scrypt$3$8$1$aa$bb"],
)
def test_a_malformed_hash_refuses_instead_of_raising(stored: str) -> None:
    assert passwords.verify_password("anything at all", stored) is False


def test_the_default_cost_is_one_of_owasps_scrypt_minimums() -> None:
    assert passwords.N * passwords.R * passwords.P >= 2**15 * 8 * 3


async def test_an_unknown_user_is_refused_after_the_same_work() -> None:
    assert await passwords.verified("whatever it is", None) is False
    stored = passwords.hash_password("the right one!", n=FAST)
    assert await passwords.verified("the right one!", stored) is True


def test_pages_escape_what_they_show() -> None:
    shown = pages.sign_in('"><script>', error="<b>no</b>", email='a"@b')
    assert "<script>" not in shown and "<b>no</b>" not in shown and 'a"@b' not in shown
    inbox = pages.inbox(pages.Viewer('u"', "<img src=x onerror=alert(1)>", "e@x", "agent", 'c"'))
    assert "<img" not in inbox and 'data-user-id="u&quot;"' in inbox
    assert "'unsafe-inline'" not in pages.CSP and "script-src 'self'" in pages.CSP
