"""A definition's text to a `Bot` ready to answer: read, parsed, checked and compiled once
(the rule index, the regexes, the branches), so a turn does no parsing."""

from __future__ import annotations

import re

from shared.bot.checks import check as check_references
from shared.bot.matching import Matcher, RuleIndex
from shared.bot.model import AskStep, Definition
from shared.bot.parse import parse
from shared.bot.problems import InvalidDefinition, Problem
from shared.bot.source import read


class Bot:
    """A loaded definition. `revision` is the number the platform gave this version when
    it was published (the API's `version`): a flow remembers the revision it started in."""

    def __init__(self, definition: Definition, revision: int = 0) -> None:
        self.definition = definition
        self.revision = revision
        self.index = RuleIndex(definition.rules, definition.language)
        self.branches: dict[tuple[str, str, int], Matcher] = {}
        self.patterns: dict[tuple[str, str], re.Pattern[str]] = {}
        for name, flow in definition.flows.items():
            for step in flow.steps:
                if not isinstance(step, AskStep):
                    continue
                if step.validate.kind == "regex":
                    self.patterns[(name, step.id)] = re.compile(step.validate.regex, re.IGNORECASE)
                for k, branch in enumerate(step.branch):
                    if branch.match is not None:
                        self.branches[(name, step.id, k)] = Matcher(branch.match)
        self.stop = frozenset(definition.opt_out.stop)
        self.start = frozenset(definition.opt_out.start)
        hours = definition.business_hours
        self.outside: frozenset[str] | None = None  # rule ids that run when closed
        if hours is not None and not hours.outside_all:
            self.outside = frozenset(hours.outside_hours)


def problems(text: str | bytes) -> list[Problem]:
    """Every problem of a definition's text (empty when it is valid): `(path, message)`."""
    data, found = read(text)
    if found:
        return found
    definition, reader = parse(data)
    if definition is None:
        return reader.problems
    return reader.problems + check_references(definition, reader)


def load(text: str | bytes, revision: int = 0) -> Bot:
    """The bot of a definition's text, or InvalidDefinition with every problem."""
    data, found = read(text)
    if found:
        raise InvalidDefinition(found)
    definition, reader = parse(data)
    if definition is None:
        raise InvalidDefinition(reader.problems)
    found = reader.problems + check_references(definition, reader)
    if found:
        raise InvalidDefinition(found)
    return Bot(definition, revision)
