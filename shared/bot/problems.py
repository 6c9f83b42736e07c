"""A validation error: where in the definition (`flows.support.steps[2].validate`), and why."""

from __future__ import annotations

from typing import NamedTuple


class Problem(NamedTuple):
    path: str
    message: str


class InvalidDefinition(ValueError):
    """The definition does not validate; `problems` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = "; ".join(f"{p.path or '(document)'}: {p.message}" for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(f"invalid bot definition: {first}{more}")


def join(path: str, key: str | int) -> str:
    """`join("flows.support", "steps")`, `join("rules", 2)` -> `rules[2]`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key
