"""Bodies sealed on the broker: they open with the deployment's key, a body in clear (from
before sealing, or a tool) opens as it is, and one sealed under another key, or with no key
here, is refused (a permanent error: dead-lettered, never retried)."""

from __future__ import annotations

import pytest

from shared.crypto.secrets import new_master_key
from shared.crypto.transit import NotOurs, is_sealed, opened, transit_for


def test_a_sealed_body_holds_nothing_readable_and_opens_with_the_key() -> None:
    transit = transit_for(new_master_key())
    assert transit is not None
    body = b'{"text": "my card is 4111 1111", "from": "393331234567"}'
    sealed = transit.seal(body)
    assert is_sealed(sealed) and b"4111" not in sealed and b"393331234567" not in sealed
    assert transit.seal(body) != sealed  # a fresh nonce each time
    assert opened(transit, sealed) == body
    assert opened(transit, body) == body  # in clear: as it is


def test_a_body_sealed_under_another_key_or_with_no_key_is_refused() -> None:
    mine, theirs = transit_for(new_master_key()), transit_for(new_master_key())
    assert mine is not None and theirs is not None
    sealed = theirs.seal(b'{"a": 1}')
    with pytest.raises(NotOurs):
        opened(mine, sealed)
    with pytest.raises(NotOurs):
        opened(None, sealed)
    tampered = bytearray(mine.seal(b'{"a": 1}'))
    tampered[-1] ^= 1
    with pytest.raises(NotOurs):
        opened(mine, bytes(tampered))
    assert transit_for("") is None


def test_a_routing_key_from_a_payload_names_nobody_and_is_stable() -> None:
    """Ingress's key for dedup (the number's id and the sender's): the same customer always
    hashes to the same lane, and the key holds neither id."""
    transit = transit_for(new_master_key())
    assert transit is not None
    key = transit.route("106540352242922.393331234567")
    assert key == transit.route("106540352242922.393331234567")
    assert "393331234567" not in key and "106540352242922" not in key
    assert key != transit.route("106540352242922.393331234568")
