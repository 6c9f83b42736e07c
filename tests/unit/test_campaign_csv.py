"""The CSV audience parser: good rows kept with their variables, each bad row reported
with its line and reason, and a CSV with no usable header refused whole."""

from __future__ import annotations

from shared.campaigns.csvimport import BadRow, number, parse


def test_rows_become_recipients_with_their_variables() -> None:
    got = parse("to,1,first_name\n+39 333 123-4567,Ann,A\n393331234568,,Bo\n")
    assert got.problem == "" and got.bad == []
    assert got.recipients == [
        {"to": "393331234567", "variables": {"1": "Ann", "first_name": "A"}},
        {"to": "393331234568", "variables": {"first_name": "Bo"}},  # empty: the default
    ]
    assert got.lines == [2, 3]


def test_bad_rows_are_reported_by_line_and_the_good_ones_kept() -> None:
    text = (
        "\ufeffphone,1\r\n"
        "+1 (555) 010-0001,a\r\n"
        "not a number,b\r\n"
        "\r\n"  # a blank line is skipped, not an error
        "15550100002\r\n"  # too few cells
        '15550100003,"quoted, with a comma"\r\n'
        "US.13491208655302741918,c\r\n"
    )
    got = parse(text)
    assert [r["to"] for r in got.recipients] == [
        "15550100001", "15550100003", "US.13491208655302741918",
    ]  # fmt: skip
    assert got.recipients[1]["variables"] == {"1": "quoted, with a comma"}
    assert got.bad == [
        BadRow(3, "`not a number` is not a phone number"),
        BadRow(5, "1 cells, the header has 2"),
    ]


def test_a_csv_without_a_to_column_is_a_problem_of_the_whole() -> None:
    assert "`to` column" in parse("name,1\nAnn,x\n").problem
    assert "header" in parse("").problem
    assert "once" in parse("to,1,1\n15550100001,a,b\n").problem


def test_numbers() -> None:
    assert number("0039 333 1234567") == "393331234567"
    assert number("12345") is None  # too short for a number
    assert number("1234567890123456") is None  # longer than E.164
