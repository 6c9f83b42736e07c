"""Reading a definition's text: a strict YAML (no surprise booleans, no sexagesimal
numbers, no duplicate keys, no aliases) or JSON."""

from __future__ import annotations

from shared.bot.problems import Problem
from shared.bot.source import MAX_BYTES, read


def test_yes_no_on_off_and_clock_times_stay_text() -> None:
    data, found = read("a: yes\nb: no\nc: on\nd: off\ne: 12:30\nf: 010\ng: 2026-12-25\n")
    assert found == []
    assert data == {
        "a": "yes",
        "b": "no",
        "c": "on",
        "d": "off",
        "e": "12:30",
        "f": "010",
        "g": "2026-12-25",
    }


def test_true_false_numbers_and_nothing_are_still_read() -> None:
    data, _ = read("a: true\nb: False\nc: 3\nd: -2\ne: 1.5\nf: ~\ng: null\n")
    assert data == {"a": True, "b": False, "c": 3, "d": -2, "e": 1.5, "f": None, "g": None}


def test_a_key_written_twice_is_an_error_with_its_line() -> None:
    assert read("rules: []\nlanguage: en\nrules: []\n") == (
        None,
        [Problem("", "line 3, column 1: `rules` written twice")],
    )


def test_aliases_are_refused() -> None:
    data, found = read("a: &x [1, 2]\nb: *x\n")
    assert data is None
    assert "aliases" in found[0].message and found[0].message.startswith("line 2")


def test_a_syntax_error_names_its_line() -> None:
    _, found = read("rules:\n  - id: a\n   match: x\n")
    assert found[0].path == "" and found[0].message.startswith("line 3")


def test_json_with_a_duplicate_key_and_broken_json() -> None:
    assert read('{"a": 1, "a": 2}')[1] == [Problem("", "`a` written twice")]
    assert read('{"a": 1,')[1][0].message.startswith("line 1")
    assert read('{"a": {"b": [1]}}') == ({"a": {"b": [1]}}, [])


def test_size_and_encoding_limits() -> None:
    assert "KiB" in read(b"a: " + b"x" * MAX_BYTES)[1][0].message
    assert "KiB" in read("a: " + "x" * MAX_BYTES)[1][0].message
    assert read(b"a: \xff")[1] == [Problem("", "the definition is not UTF-8 text")]
    assert read("a: 'è'".encode()) == ({"a": "è"}, [])
