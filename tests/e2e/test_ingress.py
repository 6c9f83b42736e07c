"""The webhook edge as Meta sees it: handshake, signatures, malformed and oversized bodies,
payload shapes we do not know yet, and the health endpoints of every service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from typing import Any

from shared.meta.signature import sign
from shared.payloads import messages_payload, text_message
from shared.services import SERVICES
from shared.stack import ROOT
from tests.e2e.harness import APP_SECRET, VERIFY_TOKEN, Running, free_port, new_customer
from tests.support.fakes import wait_for

PHONE_NUMBER_ID = "100000000000001"


def _handshake(bot: Running, **params: str) -> tuple[int, str]:
    return bot.get("/webhook?" + urllib.parse.urlencode(params))


def _received(bot: Running, wamid: str) -> list[dict[str, Any]]:
    return bot.events_of_type("MessageReceived", wamid=wamid)


def _inbox(bot: Running, customer: str) -> list[dict[str, Any]]:
    stream = "inbox-" + bot.conversation_id(PHONE_NUMBER_ID, customer)
    return [d for t, d in bot.events(stream) if t == "MessageReceived"]


def test_handshake_echoes_the_challenge_only_for_the_right_verify_token(bot: Running) -> None:
    challenge = str(uuid.uuid4().int)[:10]  # Meta's challenge is a number
    assert _handshake(
        bot,
        **{"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": challenge},
    ) == (200, challenge)

    wrong = _handshake(
        bot, **{"hub.mode": "subscribe", "hub.verify_token": "not-it", "hub.challenge": challenge}
    )
    missing = _handshake(bot, **{"hub.mode": "subscribe", "hub.challenge": challenge})
    not_subscribe = _handshake(
        bot,
        **{"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": challenge},
    )
    for status, text in (wrong, missing, not_subscribe):
        assert status == 403
        assert challenge not in text


def test_unsigned_and_forged_posts_are_rejected_and_nothing_is_recorded(bot: Running) -> None:
    customer = new_customer()
    forged_ids = []
    attempts = []
    for how in ("unsigned", "garbage", "other-secret", "other-body", "bare-hex"):
        wamid = f"wamid.forged.{uuid.uuid4().hex}"
        forged_ids.append(wamid)
        payload = text_message(f"forged {how}", customer=customer, wamid=wamid)
        body = json.dumps(payload).encode()
        if how == "unsigned":
            attempts.append(bot.post(payload, signed=False))
        elif how == "garbage":
            attempts.append(bot.post(payload, signature="sha256=" + "0" * 64))
        elif how == "other-secret":
            attempts.append(bot.post(payload, signature=sign("not-the-app-secret", body)))
        elif how == "other-body":
            attempts.append(bot.post(payload, signature=sign(APP_SECRET, body + b" ")))
        else:  # the right HMAC without the "sha256=" scheme prefix
            digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
            attempts.append(bot.post(payload, signature=digest))
    assert [status for status, _ in attempts] == [401] * len(attempts)

    # A genuine delivery for the same customer follows the forged ones through the same lanes:
    # once it is answered, anything the forged posts had caused would be visible.
    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer) == [fence]
    for wamid in forged_ids:
        assert _received(bot, wamid) == []
    assert bot.openai.requests_matching(lambda r: "forged" in r.body.decode()) == []


def test_signed_malformed_json_is_answered_200_and_quarantined_byte_for_byte(
    bot: Running,
) -> None:
    # 200 once kept: it is Meta's (signed) and stored, and a 4xx would make Meta retry it.
    marker = uuid.uuid4().hex
    # Truncated JSON with bytes that are not UTF-8: what is kept must be exactly what came in.
    truncated = b'{"object": "whatsapp_business_account", "entry": [{"id": "' + marker.encode()
    truncated += b'", "x": "\xff\xfe\x00 caf\xc3\xa9'
    not_an_object = json.dumps(["whatsapp_business_account", marker]).encode()
    for raw in (truncated, not_an_object):
        status, _ = bot.post(None, raw=raw)
        assert status == 200
        encoded = base64.b64encode(raw).decode()

        def quarantined(encoded: str = encoded) -> bool:
            return bool(bot.events_of_type("MalformedDeliveryReceived", body_base64=encoded))

        wait_for(quarantined, timeout=20, message="MalformedDeliveryReceived for the raw body")
        [event] = bot.events_of_type("MalformedDeliveryReceived", body_base64=encoded)
        assert base64.b64decode(event["body_base64"]) == raw
        stream = bot.sql(
            "SELECT stream_name FROM events WHERE type = 'MalformedDeliveryReceived'"
            " AND data->>'body_base64' = $1",
            encoded,
        )
        assert [r["stream_name"] for r in stream] == [f"quarantine-{event['delivery_id']}"]
        assert event["delivery_id"] == hashlib.sha256(raw).hexdigest()


def test_a_malformed_post_without_a_valid_signature_is_401_not_400(bot: Running) -> None:
    raw = b'{"entry": [' + uuid.uuid4().hex.encode()
    status, _ = bot.post(None, raw=raw, signed=False)
    assert status == 401
    status, _ = bot.post(None, raw=raw, signature=sign("not-the-app-secret", raw))
    assert status == 401


def test_body_limit_accepts_exactly_max_bytes_and_refuses_one_more_with_413(
    bot: Running,
) -> None:
    limit = bot.stack.settings.max_body_bytes
    customer = new_customer()

    def padded(size: int, text: str) -> bytes:
        payload = text_message(text, customer=customer)
        payload["padding"] = ""
        base = len(json.dumps(payload).encode())
        payload["padding"] = "p" * (size - base)
        body = json.dumps(payload).encode()
        assert len(body) == size
        return body

    status, _ = bot.post(None, raw=padded(limit + 1, "over the limit"))
    assert status == 413

    at_limit = padded(limit, "right at the limit")
    status, _ = bot.post(None, raw=at_limit)
    assert status == 200
    # The one over the limit was never recorded; the one at the limit is answered.
    wait_for(lambda: bot.graph.texts_to(customer) == ["echo: right at the limit"], timeout=30)
    assert [e["message"]["text"]["body"] for e in _inbox(bot, customer)] == ["right at the limit"]


def test_unknown_fields_fields_and_message_types_are_accepted_and_recorded(bot: Running) -> None:
    customer = new_customer()
    waba_id = "9" + str(uuid.uuid4().int)[:14]

    # 1. Unknown fields inside a known message type: kept, and the message is answered.
    extra_wamid = f"wamid.{uuid.uuid4().hex}"
    extra = text_message("with extras", customer=customer, wamid=extra_wamid)
    message = extra["entry"][0]["changes"][0]["value"]["messages"][0]
    message["brand_new_field"] = {"nested": [1, 2, 3], "flag": True}
    message["text"]["future_option"] = "x"
    extra["entry"][0]["changes"][0]["value"]["future_value_field"] = "y"

    # 2. A webhook field nobody has heard of.
    future_field = f"future_field_{uuid.uuid4().hex[:8]}"
    unknown_field = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "time": 1700000000,
                "changes": [{"field": future_field, "value": {"anything": ["goes", 1]}}],
            }
        ],
    }

    # 3. A message type nobody has heard of.
    odd_wamid = f"wamid.{uuid.uuid4().hex}"
    odd_type = messages_payload(
        [
            {
                "from": customer,
                "id": odd_wamid,
                "timestamp": "1700000000",
                "type": "hologram",
                "hologram": {"frames": 24},
            }
        ],
        customer=customer,
    )

    for payload in (extra, unknown_field, odd_type):
        status, _ = bot.post(payload)
        assert status == 200
    # A fence last: it follows the others through the customer's lanes, so once it is
    # answered everything before it has been handled.
    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer) == ["echo: with extras", fence]

    [received] = _received(bot, extra_wamid)
    assert received["message"]["brand_new_field"] == {"nested": [1, 2, 3], "flag": True}
    assert received["message"]["text"]["future_option"] == "x"

    def change_recorded() -> bool:
        return any(
            t == "ChangeReceived" and d["field"] == future_field
            for t, d in bot.events(f"account-{waba_id}")
        )

    wait_for(change_recorded, timeout=20, message="ChangeReceived for the unknown field")
    [change] = [d for t, d in bot.events(f"account-{waba_id}") if t == "ChangeReceived"]
    assert change["value"]["value"] == {"anything": ["goes", 1]}

    conversation = "conversation-" + bot.conversation_id(PHONE_NUMBER_ID, customer)

    def unsupported_recorded() -> bool:
        return any(
            t == "UnsupportedReceived" and d["wamid"] == odd_wamid
            for t, d in bot.events(conversation)
        )

    assert unsupported_recorded()
    [odd] = _received(bot, odd_wamid)
    assert odd["type"] == "hologram"
    assert odd["message"]["hologram"] == {"frames": 24}
    # Only the texts were answered: an unknown type gets no reply.
    assert len(bot.graph.sent_to(customer)) == 2


def test_a_signed_message_carrying_a_nul_character_is_recorded_and_answered(
    bot: Running,
) -> None:
    # "\u0000" is valid JSON, but PostgreSQL's jsonb cannot store it.
    customer = new_customer()
    wamid = f"wamid.{uuid.uuid4().hex}"
    status, _ = bot.post(text_message("nul \u0000 inside", customer=customer, wamid=wamid))
    assert status == 200
    wait_for(lambda: len(bot.graph.texts_to(customer)) == 1, timeout=20)
    [received] = _received(bot, wamid)
    body = received["message"]["text"]["body"]
    assert body.startswith("nul ") and body.endswith(" inside") and "\x00" not in body
    [reply] = bot.graph.texts_to(customer)
    assert reply.startswith("echo: nul ") and reply.endswith(" inside")


def test_every_service_answers_healthz_readyz_and_metrics(bot: Running) -> None:
    for service in SERVICES:
        port = bot.stack.settings.port_of(service)
        for path in ("/healthz", "/readyz", "/metrics"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                assert resp.status == 200, (service, path)


def test_every_service_listens_on_loopback_only_by_default(bot: Running) -> None:
    """BIND_ADDRESS unset: 127.0.0.1, not every interface (127.0.0.2 is this machine too,
    and only a wildcard bind answers there)."""
    assert "BIND_ADDRESS" not in bot.env
    for service in SERVICES:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex(("127.0.0.2", bot.stack.settings.port_of(service))) != 0, service


def test_ingress_refuses_to_start_without_an_app_secret(bot: Running) -> None:
    env = {**bot.stack.env, "WHATSAPP_APP_SECRET": "", "INGRESS_PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, "-m", "services.ingress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "WHATSAPP_APP_SECRET is not set; refusing to start" in done.stdout + done.stderr
