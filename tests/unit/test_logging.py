"""JSON logs never carry a full phone number."""

from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata

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


def test_numbers_split_by_invisible_characters_are_masked() -> None:
    # Zero-width and bidirectional characters render as nothing: the number reads whole.
    for joiner in ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u200e", "\u202e", "\u2066"):
        split = "393" + joiner + "4712" + joiner + "34154"
        assert mask_phone(split) == "393******154", repr(joiner)
    line = JsonFormatter("t").format(record("to %s", ("39\u200b3471234154",)))
    assert json.loads(line)["event"] == "to 393******154"


def test_runs_longer_than_fifteen_digits_are_masked() -> None:
    assert mask_phone("1234567890123456789") == "123*************789"
    assert mask_phone(f"{PHONE}{PHONE}") == "393******************154"
    assert mask_phone("٣٩٣٤٧١٢٣٤١٥٤") == "٣٩٣******١٥٤"  # Arabic-Indic digits are digits


def test_invisible_and_control_characters_are_escaped_not_written_raw() -> None:
    hostile = "name \u202eexe.txt\u2066 a\u2028b c\u0085d e\x9bf g\u200bh"
    line = JsonFormatter("t").format(record("hello %s", (hostile,), field=hostile))
    for raw in ("\u202e", "\u2066", "\u2028", "\u0085", "\x9b", "\u200b"):
        assert raw not in line, repr(raw)
    data = json.loads(line)
    assert data["field"] == data["event"][len("hello ") :]
    assert "\\u202eexe.txt\\u2066" in data["field"]
    assert "\\u2028" in data["field"] and "\\u009b" in data["field"]


def test_a_lone_surrogate_is_written_not_a_logging_error() -> None:
    # aiohttp keeps header bytes that are not UTF-8 as surrogates: one logged must not
    # make the formatter raise (the JSON encoder refuses surrogates).
    line = JsonFormatter("t").format(record("header %s", ("sha256=\udcff",)))
    assert json.loads(line)["event"] == "header sha256=\\udcff"


def test_the_invisible_characters_are_listed_completely() -> None:
    from shared.observability.logging import _INVISIBLE

    categories = {"Cf", "Zl", "Zp", "Cs"}
    missing = [
        f"U+{cp:04X}"
        for cp in range(sys.maxunicode + 1)
        if (unicodedata.category(chr(cp)) in categories or 0x7F <= cp <= 0x9F)
        and not _INVISIBLE.match(chr(cp))
    ]
    assert missing == []
