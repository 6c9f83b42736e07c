"""A campaign's audience, materialised once when it starts: each member gets its place
(`seq`), its variant (weighted, deterministic), and either the template's parameters filled
from its variables (the member's own over the campaign's defaults, `{{contact.x}}`
resolved) or the reason it is skipped: a duplicate of an earlier member, a contact who
opted out of marketing (for a MARKETING template), no usable identity. Variables missing
for some members are reported all together, so the start is refused before anything is
sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.meta.templates import MissingVariables, fill


@dataclass(frozen=True)
class Member:
    to: str  # the customer's key (a wa_id or a business-scoped user id); "" when none
    contact: dict[str, Any] | None = None  # name, wa_id, attributes, ... for {{contact.x}}
    opted_out: bool = False
    variables: dict[str, Any] = field(default_factory=dict)
    given: str = ""  # what the audience said (the `to` of an explicit recipient, a contact id)


@dataclass(frozen=True)
class Variant:
    template: dict[str, Any]  # name, language, category, parameter_format, components
    weight: int = 1


@dataclass(frozen=True)
class Recipient:
    seq: int
    to: str
    given: str
    variant: int
    components: list[dict[str, Any]] | None = None
    skip_reason: str | None = None


@dataclass(frozen=True)
class Missing:
    member: int  # its place in the audience
    given: str
    names: list[str]


def assign(weights: list[int], count: int) -> list[int]:
    """Smooth weighted round robin: every prefix of the audience is split as close to the
    weights as whole recipients allow (weights 1:1 alternate; 3:1 gives 0,0,1,0,...)."""
    if len(weights) == 1:
        return [0] * count
    current = [0] * len(weights)
    total = sum(weights)
    out = []
    for _ in range(count):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: current[i])
        current[best] -= total
        out.append(best)
    return out


def materialise(
    members: list[Member], variants: list[Variant], defaults: dict[str, Any]
) -> tuple[list[Recipient], list[Missing]]:
    seen: set[str] = set()
    recipients: list[Recipient] = []
    missing: list[Missing] = []
    variant_of = assign([v.weight for v in variants], len(members))
    for seq, (member, v) in enumerate(zip(members, variant_of, strict=True)):
        variant = variants[v]
        reason = None
        if not member.to:
            reason = "no_identity"
        elif member.to in seen:
            reason = "duplicate"
        elif member.opted_out and variant.template.get("category") == "MARKETING":
            reason = "opted_out"
        if reason is not None:
            recipients.append(Recipient(seq, member.to, member.given, v, skip_reason=reason))
            continue
        seen.add(member.to)
        try:
            components = fill(variant.template, {**defaults, **member.variables}, member.contact)
        except MissingVariables as exc:
            missing.append(Missing(seq, member.given or member.to, exc.names))
            continue
        recipients.append(Recipient(seq, member.to, member.given, v, components))
    return recipients, missing
