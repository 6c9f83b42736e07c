"""Meta's message templates: what a template asks for when it is sent, checking a send's
parameters against it, and filling them from variables. Pure: no I/O.

A template (as `GET /{WABA}/message_templates` gives it) has components HEADER (format
TEXT with at most one placeholder, or IMAGE / VIDEO / DOCUMENT / LOCATION), BODY, FOOTER and
BUTTONS. Placeholders are `{{1}}`, `{{2}}`, ... (parameter_format POSITIONAL, the default)
or `{{first_name}}` (NAMED, where every parameter sent must carry its `parameter_name`).
Meta answers a mismatch with 132000 after the fact; checking first makes it a 422 naming
the parameter, and a variable that is missing is never sent as an empty parameter.

Variables (campaigns, and `fill`) are keyed as the placeholders are: `"1"`, `"2"` or
`"first_name"` for the body; `"header.1"` / `"header.<name>"` for a text header,
`"header"` for a media header's link (or id); `"button.<index>"` for a URL button's
suffix or a copy-code button's code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
MEDIA_FORMATS = {"IMAGE": "image", "VIDEO": "video", "DOCUMENT": "document"}
TEXT_TYPES = ("text", "currency", "date_time")
MAX_PARAMETER = 1024  # characters of one text parameter (body); Meta refuses longer
SENDABLE = "APPROVED"


@dataclass(frozen=True)
class Slot:
    """One parameter a send must give: in `component` (header, body, button), at `position`
    (0-based), named `name` (the placeholder: "1" or "first_name"), of `kind` (text, image,
    video, document, location, coupon_code); `index` and `sub_type` for a button."""

    component: str
    position: int
    name: str
    kind: str = "text"
    index: int | None = None
    sub_type: str | None = None

    @property
    def variable(self) -> str:
        """The variable that fills it."""
        if self.component == "body":
            return self.name
        if self.component == "header":
            return "header" if self.kind != "text" else f"header.{self.name}"
        return f"button.{self.index}"


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


def _placeholders(text: Any) -> list[str]:
    seen: list[str] = []
    for name in PLACEHOLDER.findall(text if isinstance(text, str) else ""):
        if name not in seen:
            seen.append(name)
    return seen


def named(template: dict[str, Any]) -> bool:
    return str(template.get("parameter_format") or "POSITIONAL").upper() == "NAMED"


def slots(template: dict[str, Any]) -> list[Slot]:
    """Every parameter the template needs, in Meta's order."""
    out: list[Slot] = []
    for component in template.get("components") or []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            fmt = str(component.get("format") or "TEXT").upper()
            if fmt in MEDIA_FORMATS:
                out.append(Slot("header", 0, "header", MEDIA_FORMATS[fmt]))
            elif fmt == "LOCATION":
                out.append(Slot("header", 0, "header", "location"))
            else:
                for i, name in enumerate(_placeholders(component.get("text"))):
                    out.append(Slot("header", i, name))
        elif kind == "BODY":
            for i, name in enumerate(_placeholders(component.get("text"))):
                out.append(Slot("body", i, name))
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or []):
                if not isinstance(button, dict):
                    continue
                btype = str(button.get("type", "")).upper()
                if btype == "URL" and _placeholders(button.get("url")):
                    out.append(Slot("button", 0, "1", "text", index, "url"))
                elif btype == "COPY_CODE":
                    out.append(Slot("button", 0, "1", "coupon_code", index, "copy_code"))
    return out


def _button_index(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def check(template: dict[str, Any], components: list[dict[str, Any]] | None) -> list[Problem]:
    """What is wrong with sending `components` (the send's `template.components`, as dicts)
    with this template; [] when Meta would take it."""
    problems: list[Problem] = []
    wanted = slots(template)
    is_named = named(template)
    given: dict[tuple[str, int | None], tuple[int, dict[str, Any]]] = {}
    for i, component in enumerate(components or []):
        ctype = str(component.get("type", "")).lower()
        key = (ctype, _button_index(component.get("index")) if ctype == "button" else None)
        if ctype == "button" and key[1] is None:
            problems.append(Problem(f"template.components[{i}].index", "a button needs its index"))
            continue
        if key in given:
            problems.append(Problem(f"template.components[{i}]", f"a second {ctype} component"))
            continue
        given[key] = (i, component)
    for key, (i, component) in given.items():
        ctype, index = key
        expected = [s for s in wanted if s.component == ctype and s.index == index]
        where = f"template.components[{i}]"
        parameters = component.get("parameters") or []
        if not expected:
            if parameters and ctype in ("header", "body", "button"):
                what = f"button {index}" if ctype == "button" else f"the {ctype}"
                problems.append(
                    Problem(f"{where}.parameters", f"{what} of this template takes no parameters")
                )
            continue
        if ctype == "button":
            sub_type = str(component.get("sub_type") or "").lower()
            if sub_type != expected[0].sub_type:
                problems.append(
                    Problem(f"{where}.sub_type", f"button {index} is {expected[0].sub_type!r}")
                )
        problems += _check_parameters(expected, parameters, is_named, where)
    for slot in wanted:
        if (slot.component, slot.index) not in given:
            problems.append(Problem("template.components", f"{_describe(slot)} is missing"))
    return problems


def _describe(slot: Slot) -> str:
    if slot.component == "button":
        return f"the parameter of button {slot.index} ({slot.sub_type})"
    if slot.kind != "text":
        return f"the header's {slot.kind}"
    return f"{slot.component} parameter {{{{{slot.name}}}}}"


def _check_parameters(
    expected: list[Slot], parameters: list[Any], is_named: bool, where: str
) -> list[Problem]:
    problems: list[Problem] = []
    if is_named and expected[0].kind == "text" and expected[0].component != "button":
        by_name: dict[str, int] = {}
        for j, p in enumerate(parameters):
            pname = p.get("parameter_name") if isinstance(p, dict) else None
            if not isinstance(pname, str) or not pname:
                problems.append(
                    Problem(
                        f"{where}.parameters[{j}].parameter_name",
                        "a NAMED template needs parameter_name on every parameter",
                    )
                )
                continue
            if pname in by_name:
                problems.append(Problem(f"{where}.parameters[{j}]", f"{pname!r} given twice"))
                continue
            by_name[pname] = j
        names = {s.name for s in expected}
        for pname, j in by_name.items():
            if pname not in names:
                problems.append(
                    Problem(
                        f"{where}.parameters[{j}].parameter_name",
                        f"the template has no parameter {pname!r}",
                    )
                )
        for slot in expected:
            if slot.name not in by_name:
                if len(by_name) == len(parameters):  # else the unnamed ones were said
                    problems.append(Problem(f"{where}.parameters", f"{_describe(slot)} is missing"))
            else:
                j = by_name[slot.name]
                problems += _check_value(slot, parameters[j], f"{where}.parameters[{j}]")
        return problems
    if len(parameters) != len(expected):
        problems.append(
            Problem(
                f"{where}.parameters",
                f"{len(expected)} parameter(s) expected, {len(parameters)} given"
                + "".join(f"; {_describe(s)} is missing" for s in expected[len(parameters) :]),
            )
        )
    for j, (slot, p) in enumerate(zip(expected, parameters, strict=False)):
        problems += _check_value(slot, p, f"{where}.parameters[{j}]")
    return problems


def _check_value(slot: Slot, parameter: Any, path: str) -> list[Problem]:
    if not isinstance(parameter, dict):
        return [Problem(path, "a parameter is an object with its type")]
    ptype = parameter.get("type")
    if slot.kind == "text":
        if ptype not in TEXT_TYPES:
            return [Problem(f"{path}.type", f"{_describe(slot)} is text, not {ptype!r}")]
        if ptype == "text":
            text = parameter.get("text")
            if not isinstance(text, str) or not text.strip():
                return [Problem(f"{path}.text", f"{_describe(slot)} is empty")]
            if len(text) > MAX_PARAMETER:
                return [Problem(f"{path}.text", f"over {MAX_PARAMETER} characters")]
        elif not isinstance(parameter.get(ptype), dict):
            return [Problem(f"{path}.{ptype}", f"a {ptype} parameter needs its object")]
        return []
    if ptype != slot.kind:
        return [Problem(f"{path}.type", f"{_describe(slot)} is of type {slot.kind!r}")]
    if slot.kind == "coupon_code":
        code = parameter.get("coupon_code")
        if not isinstance(code, str) or not code.strip():
            return [Problem(f"{path}.coupon_code", "the code is empty")]
        return []
    body = parameter.get(slot.kind)
    if not isinstance(body, dict):
        return [Problem(f"{path}.{slot.kind}", f"the {slot.kind} object is needed")]
    if slot.kind in ("image", "video", "document") and not (body.get("id") or body.get("link")):
        return [Problem(f"{path}.{slot.kind}", "media by `id` or `link`")]
    return []


class MissingVariables(ValueError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


CONTACT_REF = re.compile(r"\{\{\s*contact\.([A-Za-z0-9_.]+)\s*\}\}")


def resolve(value: str, contact: dict[str, Any] | None) -> str:
    """`{{contact.name}}`, `{{contact.wa_id}}`, `{{contact.attributes.city}}` (or just
    `{{contact.city}}` for an attribute) from the contact; unknown fields give ""."""
    contact = contact or {}

    def one(match: re.Match[str]) -> str:
        path = match.group(1)
        if path.startswith("attributes."):
            found = (contact.get("attributes") or {}).get(path.split(".", 1)[1])
        elif path in contact and path != "attributes":
            found = contact.get(path)
        else:
            found = (contact.get("attributes") or {}).get(path)
        return "" if found is None else str(found)

    return CONTACT_REF.sub(one, value)


def fill(
    template: dict[str, Any],
    variables: dict[str, Any],
    contact: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The send's components from variables (see the module's docstring for their keys).
    A variable missing, or empty once contact references are resolved, is MissingVariables
    naming every one of them: never an empty parameter."""
    missing: list[str] = []
    values: dict[Slot, str] = {}
    for slot in slots(template):
        raw = variables.get(slot.variable)
        value = resolve(str(raw), contact).strip() if raw is not None else ""
        if not value:
            missing.append(slot.variable)
        values[slot] = value
    if missing:
        raise MissingVariables(missing)
    is_named = named(template)
    components: list[dict[str, Any]] = []
    for ctype in ("header", "body"):
        parameters = []
        for slot in (s for s in values if s.component == ctype):
            value = values[slot]
            if slot.kind == "text":
                p: dict[str, Any] = {"type": "text", "text": value}
                if is_named:
                    p["parameter_name"] = slot.name
            elif slot.kind == "location":
                raise MissingVariables([slot.variable])  # a location is not one string
            else:
                ref = (
                    {"link": value} if value.startswith(("http://", "https://")) else {"id": value}
                )
                p = {"type": slot.kind, slot.kind: ref}
            parameters.append(p)
        if parameters:
            components.append({"type": ctype, "parameters": parameters})
    for slot in (s for s in values if s.component == "button"):
        p = (
            {"type": "coupon_code", "coupon_code": values[slot]}
            if slot.kind == "coupon_code"
            else {"type": "text", "text": values[slot]}
        )
        components.append(
            {
                "type": "button",
                "sub_type": slot.sub_type,
                "index": str(slot.index),
                "parameters": [p],
            }
        )
    return components


def variables_needed(template: dict[str, Any]) -> list[str]:
    return [s.variable for s in slots(template)]


def render(template: dict[str, Any], components: list[dict[str, Any]] | None) -> str:
    """The body's text as the customer reads it (for the history, and the bot's view)."""
    body = next(
        (
            c
            for c in template.get("components") or []
            if isinstance(c, dict) and str(c.get("type", "")).upper() == "BODY"
        ),
        None,
    )
    if body is None:
        return f"[template {template.get('name', '')}]"
    given = next((c for c in components or [] if str(c.get("type")).lower() == "body"), None)
    parameters = (given or {}).get("parameters") or []
    by_name: dict[str, str] = {}
    for i, p in enumerate(parameters):
        if isinstance(p, dict):
            text = str(p.get("text", ""))
            by_name[str(p.get("parameter_name") or i + 1)] = text
    names = _placeholders(body.get("text"))
    if not named(template):
        by_name = {name: by_name.get(str(i + 1), "") for i, name in enumerate(names)}
    return PLACEHOLDER.sub(lambda m: by_name.get(m.group(1), m.group(0)), str(body.get("text", "")))
