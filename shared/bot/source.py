"""A definition's text (YAML, or the same as JSON) as plain data. Pure.

YAML is read with a safe loader made stricter for a language people type by hand:
- only `true`/`false` are booleans, so a button id `yes`, `no`, `on` or `off` stays text
  (YAML 1.1 would make them booleans);
- `12:30` is text, not the sexagesimal number 750; `010` is text, not octal 8; a day such
  as `2026-12-25` is text (the parser reads it);
- a key written twice in one mapping is an error, not silently the last one;
- anchors and aliases (`&x`, `*x`, `<<:`) are refused: an alias bomb could expand a small
  text into gigabytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from shared.bot.problems import Problem

MAX_BYTES = 1024 * 1024

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ComposerError(None, None, "aliases (*name) are not supported", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                raise ConstructorError(
                    None, None, "a key must be text", key_node.start_mark
                ) from None
            if duplicate:
                raise ConstructorError(None, None, f"`{key}` written twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), None)
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), None)
_Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"), None
)


def read(text: str | bytes) -> tuple[Any, list[Problem]]:
    """The data of a definition, or the problems that kept it from being read."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            return None, [Problem("", f"the definition is over {MAX_BYTES // 1024} KiB")]
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return None, [Problem("", "the definition is not UTF-8 text")]
    if len(text.encode("utf-8")) > MAX_BYTES:
        return None, [Problem("", f"the definition is over {MAX_BYTES // 1024} KiB")]
    if text.lstrip().startswith("{"):
        return _json(text)
    try:
        return yaml.load(text, Loader=_Loader), []  # the strict safe loader above
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return None, [Problem("", f"{where}{exc.problem or exc.context}")]
    except yaml.YAMLError as exc:
        return None, [Problem("", f"not YAML: {exc}")]


def _json(text: str) -> tuple[Any, list[Problem]]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        mapping: dict[str, Any] = {}
        for key, value in items:
            if key in mapping:
                raise ValueError(f"`{key}` written twice")
            mapping[key] = value
        return mapping

    try:
        return json.loads(text, object_pairs_hook=pairs), []
    except json.JSONDecodeError as exc:
        return None, [Problem("", f"line {exc.lineno}, column {exc.colno}: {exc.msg}")]
    except ValueError as exc:
        return None, [Problem("", str(exc))]
