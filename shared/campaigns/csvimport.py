"""An audience imported as CSV: a header row naming the columns, one recipient a row.

The `to` column (also `wa_id` or `phone`) is the customer's number (digits, with an
optional `+`, spaces, dots, dashes or brackets: `+39 333 123-4567`) or business-scoped user
id (`US.1234...`); every other column is a variable of that recipient (`1`, `2`, `name`,
`header.1`, `button.0`: as in `recipients[].variables`), an empty cell leaving the
campaign's default. A bad row is reported (its line, the reason) and the good ones are
kept. Pure: no I/O."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

TO_COLUMNS = ("to", "wa_id", "phone")
MAX_COLUMNS = 100
MAX_CELL = 1024
_SEPARATORS = re.compile(r"[\s().\-]")
_WA_ID = re.compile(r"^[0-9]{6,15}$")
_USER_ID = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9.]{1,120}$")


@dataclass(frozen=True)
class BadRow:
    line: int  # 1 is the header
    reason: str


@dataclass
class Imported:
    recipients: list[dict[str, object]] = field(default_factory=list)  # {"to", "variables"?}
    lines: list[int] = field(default_factory=list)  # each recipient's line
    bad: list[BadRow] = field(default_factory=list)
    problem: str = ""  # the whole CSV unusable (no header, no `to` column): why


def number(value: str) -> str | None:
    """The recipient id a cell names, or None."""
    value = value.strip()
    if _USER_ID.fullmatch(value):
        return value
    digits = _SEPARATORS.sub("", value)
    digits = digits[1:] if digits.startswith("+") else digits
    digits = digits[2:] if digits.startswith("00") else digits
    return digits if _WA_ID.fullmatch(digits) else None


def parse(text: str) -> Imported:
    out = Imported()
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = next(rows, None)
    except csv.Error as exc:
        out.problem = f"the header is not CSV: {exc}"
        return out
    names = [h.strip() for h in header or []]
    if not any(names):
        out.problem = "no header row (a `to` column and one column per variable)"
        return out
    found = [i for i, n in enumerate(names) if n.lower() in TO_COLUMNS]
    if len(found) != 1:
        out.problem = "the header needs exactly one `to` column (or `wa_id`, `phone`)"
        return out
    if len(names) > MAX_COLUMNS:
        out.problem = f"more than {MAX_COLUMNS} columns"
        return out
    empty = [i + 1 for i, n in enumerate(names) if not n]
    if empty or len(set(names)) != len(names):
        out.problem = "every column needs a name, once"
        return out
    at = found[0]
    line = 1
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            line = rows.line_num
            out.bad.append(BadRow(line, f"not CSV: {exc}"))
            continue
        line = rows.line_num
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(names):
            out.bad.append(BadRow(line, f"{len(row)} cells, the header has {len(names)}"))
            continue
        if any(len(cell) > MAX_CELL for cell in row):
            out.bad.append(BadRow(line, f"a cell over {MAX_CELL} characters"))
            continue
        to = number(row[at])
        if to is None:
            out.bad.append(BadRow(line, f"`{row[at].strip()[:40]}` is not a phone number"))
            continue
        variables = {n: c.strip() for i, (n, c) in enumerate(zip(names, row, strict=True))
                     if i != at and c.strip()}  # fmt: skip
        out.recipients.append({"to": to, "variables": variables} if variables else {"to": to})
        out.lines.append(line)
    return out
