"""JSON logs never carry a full phone number."""

from __future__ import annotations

import json
import logging
import re
import sys

from shared.observability.logging import JsonFormatter, mask_phone

PHONE = "393471234154"
FULL_NUMBER = re.compile(r"\d{10,}")


def test_mask_phone() -> None:
    assert mask_phone("393471234154") == "393******154"


def test_mask_phone_inside_text_and_ids() -> None:
    assert mask_phone(f"customer {PHONE} wrote") == "customer 393******154 wrote"
    assert mask_phone(f"100000000000001.{PHONE}") == "100*********001.393******154"
    assert mask_phone(f"+{PHONE}") == "+393******154"


def test_short_numbers_are_left_alone() -> None:
    for value in ("seq 42", "status 131047", "2024-05-01", "attempt 3 of 5"):
        assert mask_phone(value) == value


def record(msg: str, args: tuple[object, ...] = (), **fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("test", logging.WARNING, __file__, 1, msg, args, None)
    rec.fields = fields  # type: ignore[attr-defined]
    return rec


def test_json_line_masks_phones_in_fields_message_and_nested_values() -> None:
    rec = record(
        "reply to %s failed",
        (PHONE,),
        customer=PHONE,
        conversation_id=f"100000000000001.{PHONE}",
        nested={"to": f"+{PHONE}", "list": [PHONE, {"deep": PHONE}]},
        seq=3,
    )
    line = JsonFormatter("outbound").format(rec)
    assert PHONE not in line
    data = json.loads(line)
    assert not FULL_NUMBER.search(json.dumps({k: v for k, v in data.items() if k != "ts"}))
    assert data["customer"] == "393******154"
    assert data["nested"]["list"][1]["deep"] == "393******154"
    assert data["event"] == "reply to 393******154 failed"
    assert data["seq"] == 3
    assert (data["service"], data["level"], data["logger"]) == ("outbound", "warning", "test")


def test_json_line_masks_phones_in_exceptions() -> None:
    try:
        raise ValueError(f"bad recipient {PHONE}")
    except ValueError:
        rec = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    line = JsonFormatter("outbound").format(rec)
    assert PHONE not in line
    assert "393******154" in json.loads(line)["exception"]
