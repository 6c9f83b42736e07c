"""`POST /v1/campaigns/audience` (an extension, role admin): how many recipients an audience
would have, counted as `start` counts it (the same members read from the contacts read
model, the same materialisation: duplicates, opted-out contacts and members without
identity skipped), so the figure shown before sending is the one the campaign uses. Nothing
is recorded. With a template (or variants) its category decides the opt-out (only a
MARKETING template skips them) and its variables are checked; without one the audience is
counted as for a MARKETING template, the usual case."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from services.api import inputs
from services.api.campaigns import (
    AudienceIn,
    TemplateRef,
    Variables,
    VariantIn,
    _import_csv,
    _members,
    _variants,
)
from services.api.errors import invalid
from services.api.routes import ADMIN, Call, Reply, Route
from services.api.schemas import Answer, Request
from services.api.sending import resolve_number
from services.api.writes import Write, write
from shared.campaigns.audience import Variant, materialise

# Stands for "a MARKETING template" when none is named: every parameter-free.
_ANY_MARKETING = {"name": "", "language": "", "category": "MARKETING", "components": []}


class CountAudience(Request, kw_only=True):
    audience: AudienceIn
    phone_number_id: Annotated[str, Meta(pattern=r"^[0-9]{1,32}$")] | None = None
    template: TemplateRef | None = None
    variants: Annotated[list[VariantIn], Meta(min_length=1, max_length=10)] | None = None
    variables: Variables | None = None


class AudienceCount(Answer, kw_only=True):
    total: int  # every member: the campaign's counts.total at start
    reachable: int  # total minus the skipped: the campaign's total - skipped
    opted_out: int
    duplicate: int
    no_identity: int
    missing_variables: int  # members whose variables would be missing: start refuses them
    csv_rejected: int = 0  # rows of a CSV audience left out (see campaigns.md)


async def count_audience(call: Call) -> Reply:
    body, _ = await inputs.body(call.request, CountAudience)
    audience = body.audience
    given = [audience.tags, audience.recipients, audience.csv]
    if sum(1 for g in given if g is not None) != 1:
        raise invalid("audience", "exactly one of `tags`, `recipients` or `csv`")
    if body.template is not None and body.variants is not None:
        raise invalid("variants", "either `template` or `variants`")
    business = call.business_id
    defaults = dict(body.variables or {})
    # A read: the write's connection resolves the number as a create does; nothing appended.
    async with write(call.deps.pool) as w:
        number = await resolve_number(call, w, body.phone_number_id)
        chosen = body.variants or ([VariantIn(template=body.template)] if body.template else [])
        found = await _variants(w.conn, business, number, chosen) if chosen else []
        plain = dict(msgspec.to_builtins(audience))
        rejected = 0
        if audience.csv is not None:
            recipients, report = _import_csv(audience.csv, found, defaults)
            rejected = len(report.rejected)
            plain = {"recipients": msgspec.to_builtins(recipients)}
        answer = await _count(w, business, plain, found, defaults)
    answer.csv_rejected = rejected
    return Reply(200, answer)


async def _count(
    w: Write,
    business: str,
    audience: dict[str, Any],
    found: list[dict[str, Any]],
    defaults: dict[str, Any],
) -> AudienceCount:
    members = await _members(w.conn, business, audience)
    variants = [Variant(v, v.get("weight", 1)) for v in found] or [Variant(_ANY_MARKETING)]
    recipients, missing = materialise(members, variants, defaults)
    reasons = [r.skip_reason for r in recipients]
    skipped = sum(1 for r in reasons if r is not None)
    return AudienceCount(
        total=len(members),
        reachable=len(members) - skipped,  # those missing a variable too: said apart
        opted_out=reasons.count("opted_out"),
        duplicate=reasons.count("duplicate"),
        no_identity=reasons.count("no_identity"),
        missing_variables=len(missing),
    )


ROUTES = (
    Route(
        "POST", "/v1/campaigns/audience", count_audience,
        "Count an audience's recipients as a start would (nothing recorded)", "key",
        roles=ADMIN, request=CountAudience, answer=AudienceCount, errors=(400, 404, 422),
    ),
)  # fmt: skip
