"""The event catalogue, generated from the event types: `docs/events.md`.

`python -m shared.events.catalogue` writes it; a test fails when the file is not what the
code would write, so the catalogue cannot drift from the code. Descriptions come from each
Struct's docstring and each field's trailing comment.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from pathlib import Path
from typing import Any

import msgspec

from shared import events, schemas
from shared.eventstore import Event

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
_FIELD = re.compile(r"^\s+(\w+):[^#]*#\s*(.+)$")


def _type_name(tp: Any) -> str:
    if tp is msgspec.UnsetType:
        return "unset"
    if isinstance(tp, types.UnionType) or getattr(tp, "__origin__", None) is not None:
        text = str(tp)
    else:
        text = getattr(tp, "__name__", str(tp))
    return text.replace("typing.", "").replace("msgspec.UnsetType", "unset")


def _default(field: msgspec.structs.FieldInfo) -> str:
    if field.required:
        return ""
    if field.default is not msgspec.NODEFAULT:
        value = field.default
        return "unset" if value is msgspec.UNSET else f"`{value!r}`"
    return f"`{field.default_factory()!r}`"


def _comments(cls: type) -> dict[str, str]:
    """Trailing `# ...` comments of the fields a class itself declares."""
    found: dict[str, str] = {}
    for line in inspect.getsource(cls).splitlines():
        match = _FIELD.match(line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def _doc(obj: Any) -> str:
    return " ".join(inspect.cleandoc(obj.__doc__ or "").split())


def _fields_table(cls: type) -> list[str]:
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("shared.") and klass not in (Event, schemas.Message):
            comments.update(_comments(klass))
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for field in msgspec.structs.fields(cls):  # type: ignore[arg-type]
        meaning = comments.get(field.name, "").replace("|", "\\|")
        kind = _type_name(field.type).replace("|", "\\|")
        rows.append(f"| `{field.name}` | {kind} | {_default(field)} | {meaning} |")
    return rows


def render() -> str:
    out = [
        "# Event catalogue",
        "",
        "Generated from `shared/events/` by `python -m shared.events.catalogue`; do not edit.",
        "A test fails when this file is stale.",
        "",
        "Every event is a row of the `events` table: `type` is the event's name, `data` its",
        "fields as JSON, and `metadata` holds the correlation and causation ids, the W3C trace",
        "context and `schema_version` (rows without it are schema 1). A row written under an",
        "older schema is brought up to date by the type's upcasters when it is read.",
        "The events a CRM receives from the webhook relay are a separate, public catalogue:",
        "[webhooks.md](webhooks.md).",
        "",
    ]
    for writer, module in events.MODULES.items():
        out += [f"## Written by {writer}", "", _doc(module), ""]
        streams = [
            fn
            for name, fn in vars(module).items()
            if name.endswith("_stream") and inspect.isfunction(fn)
        ]
        if streams:
            out.append("Streams:")
            for fn in streams:
                params = inspect.signature(fn).parameters
                example = fn(*(f"<{name}>" for name in params))
                out.append(f"- `{example}`" + (f": {_doc(fn)}" if fn.__doc__ else ""))
            out.append("")
        for cls in module.EVENTS:
            version = f" (schema {cls.schema})" if cls.schema != 1 else ""
            out += [f"### {cls.__name__}{version}", "", _doc(cls), "", *_fields_table(cls), ""]
    out += [
        "## Messages on the broker",
        "",
        "Commands and answers between services (`shared/schemas.py`): the AMQP `type`",
        "property carries the tag; the routing key is the conversation id.",
        "",
    ]
    for name, cls in vars(schemas).items():
        if (
            isinstance(cls, type)
            and issubclass(cls, schemas.Message)
            and cls is not schemas.Message
            and cls.__module__ == schemas.__name__
        ):
            tag = cls.__struct_config__.tag
            description = _doc(cls) if cls.__doc__ else ""
            out += [f"### {name} (`{tag}`)", "", description, "", *_fields_table(cls), ""]
    return "\n".join(line.rstrip() for line in out).rstrip() + "\n"


def main() -> int:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
