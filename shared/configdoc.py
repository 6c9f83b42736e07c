"""The configuration reference, generated from the settings: `docs/configuration.md`.

`python -m shared.configdoc` writes it; a test fails when the file is not what the code
would write, so the reference cannot drift from the code. Each row comes from a `Settings`
field (its description and section are the field's metadata, shared/config.py), the
per-service ports and per-stage queue counts from shared/services.py, and the variables read
elsewhere from `config.OTHER_VARIABLES`.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

from shared import config
from shared.config import Section, Settings
from shared.services import queues_variable, scale_variable, spec_of

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

# The mappings read from one variable per entry (as load_settings reads them): the variable
# of an entry, and the placeholder that names the entry in the field's description.
PER_ENTRY: dict[str, tuple[Callable[[str], str], str]] = {
    "ports": (lambda name: spec_of(name).port_variable, "service"),
    "queues": (queues_variable, "stage"),
    "scale": (scale_variable, "service"),
}

Row = tuple[str, str, str, str]  # variable, default, type, meaning

_HEADER = """\
# Configuration

Generated from `shared/config.py` and `shared/services.py` by `python -m shared.configdoc`
(or `make docs`); do not edit. A test fails when this file is stale.

## Where settings come from

Each setting is read from the process environment first, then from the settings file, then
it has the default below. The environment wins, even with an empty value.

- The settings file is `ENV_FILE`, relative to the current directory, or else `.env` in the
  current directory. `python -m ops` (behind `make up`, `make status`, `make demo`...) reads
  `ENV_FILE` or else the checkout's `.env`; `make up` starts the services from the checkout
  with `ENV_FILE` set to that file's absolute path, so that they all read the same one.
- `make up` writes into it each generated secret that neither the file nor the environment
  has (`WHATSAPP_APP_SECRET`, `WHATSAPP_VERIFY_TOKEN`, `ADMIN_TOKEN`, `MASTER_KEY`,
  `CONSOLE_PASSWORD`), mode 0600, on every run, and never replaces a value. A new file also
  gets empty `WHATSAPP_ACCESS_TOKEN=` and `OPENAI_API_KEY=` lines to fill in.
- The file holds `NAME=value` lines. Blank lines and lines starting with `#` are skipped, and
  one pair of matching quotes around a value is removed. There is no `export` and no
  `${...}` expansion, and a `#` after a value is part of it. Its values are not put into the
  environment (docker compose's `env_file` does that for its containers): under `make up`,
  the `OTEL_*` variables, read by the OpenTelemetry SDK, must be in the environment itself.
- A boolean is true for `1`, `true`, `yes` or `on` (any case), false for anything else. A
  number that does not parse stops the process at start.
- A process reads its settings once, when it starts: after a change, `make down && make up`.
"""


def _default(value: object) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def _type_name(tp: object) -> str:
    return getattr(tp, "__name__", str(tp))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(section: Section) -> Iterator[Row]:
    hints = typing.get_type_hints(Settings)
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        if f.metadata.get("section") is not section:
            continue
        doc = f.metadata["doc"]
        value = getattr(defaults, f.name)
        if f.name in PER_ENTRY:
            variable_of, placeholder = PER_ENTRY[f.name]
            kind = _type_name(typing.get_args(hints[f.name])[1])
            for entry, default in value.items():
                meaning = doc.format(**{placeholder: entry})
                yield f"`{variable_of(entry)}`", _default(default), kind, meaning
        else:
            yield f"`{f.name.upper()}`", _default(value), _type_name(hints[f.name]), doc
    for other in config.OTHER_VARIABLES:
        if other.section is section:
            yield f"`{other.name}`", other.default, other.type, other.doc


def render() -> str:
    out = [_HEADER.rstrip("\n"), ""]
    for section in config.SECTIONS:
        out += [f"## {section.title}", ""]
        if section.intro:
            out += [section.intro, ""]
        out += ["| variable | default | type | meaning |", "|---|---|---|---|"]
        out += [" | ".join(["", *map(_cell, row), ""]).strip() for row in _rows(section)]
        out.append("")
    return "\n".join(line.rstrip() for line in out).rstrip() + "\n"


def main() -> int:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
