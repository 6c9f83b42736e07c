"""Campaigns (business key; writes for admins, reads for every role: the console shows
agents and viewers the progress): `POST /v1/campaigns` records a draft
(CampaignDefined in `campaigncmd-<id>`) once its templates are APPROVED in the number's
WABA and every explicit recipient's variables fill them; `start` evaluates the audience
once, here, where the contacts read model is (read your writes: a contact tagged a moment
ago is in it), and records it with the start (CampaignAudience, CampaignCommanded); the
campaigns service runs it from there. pause / resume / cancel are commands too. A command
that does not fit the campaign's status is a 409, and the command stream's expected
version makes two racing starts one start."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from msgspec import Meta

from services.api import access, ids, inputs, queries, templates
from services.api import cursor as cursors
from services.api.errors import ApiError, conflict, invalid, not_found
from services.api.projections import campaigns as campaigns_model
from services.api.routes import ADMIN, PAGING, Call, Query, Reply, Route, created, paging
from services.api.schemas import Answer, Name, Request, Sparse, Tag, Time
from services.api.sending import resolve_number
from services.api.writes import Write, write
from shared.campaigns import csvimport
from shared.campaigns.audience import Member, Variant, materialise
from shared.crypto import erased
from shared.events.business import (
    CampaignAudience,
    CampaignCommanded,
    CampaignDefined,
    campaign_command_stream,
)
from shared.events.campaigns import recipient_message_id
from shared.eventstore import NO_STREAM, WrongExpectedVersion, new
from shared.meta.templates import MissingVariables, fill

READ_MODELS = (campaigns_model.NAME,)
PART = 1000  # recipients per CampaignAudience event
MAX_AUDIENCE = 100_000
MAX_REPORTED = 50  # fields named in one 422
STATUSES = ("draft", "scheduled", "running", "paused", "completed", "cancelled")
RECIPIENT_STATUSES = ("queued", "sent", "delivered", "read", "failed", "skipped")
To = Annotated[str, Meta(pattern=r"^[A-Za-z0-9.:_-]{1,128}$")]
Variables = Annotated[dict[str, str | int | float], Meta(max_length=100)]


class LanguageObject(Request, kw_only=True):
    code: templates.LanguageCode


class TemplateRef(Request, kw_only=True):
    name: templates.TemplateName
    language: templates.LanguageCode | LanguageObject

    @property
    def code(self) -> str:
        return self.language if isinstance(self.language, str) else self.language.code


class RecipientIn(Request, kw_only=True):
    to: To
    variables: Variables | None = None


class AudienceIn(Request, kw_only=True):
    tags: Annotated[list[Tag], Meta(min_length=1, max_length=50)] | None = None
    recipients: Annotated[list[RecipientIn], Meta(min_length=1, max_length=MAX_AUDIENCE)] | None = (
        None
    )
    # A CSV: a header (`to` and one column per variable), one recipient a row.
    csv: Annotated[str, Meta(min_length=1)] | None = None


class VariantIn(Request, kw_only=True):
    template: TemplateRef
    weight: Annotated[int, Meta(ge=1, le=1000)] = 1


class CreateCampaign(Request, kw_only=True):
    name: Name
    template: TemplateRef
    audience: AudienceIn
    phone_number_id: Annotated[str, Meta(pattern=r"^[0-9]{1,32}$")] | None = None
    variables: Variables | None = None
    variants: Annotated[list[VariantIn], Meta(min_length=1, max_length=10)] | None = None
    schedule_at: Time | None = None


class TemplateName(Answer, kw_only=True):
    name: str
    language: str


class Counts(Answer, kw_only=True):
    total: int = 0
    queued: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    replied: int = 0
    failed: int = 0
    skipped: int = 0


class VariantView(Answer, kw_only=True):
    template: TemplateName
    weight: int
    counts: Counts


class BadRowView(Answer, kw_only=True):
    line: int
    reason: str


class CsvReport(Answer, kw_only=True):
    """What a CSV audience imported: the recipients kept, and each row left out."""

    imported: int
    rejected: list[BadRowView]


class Campaign(Sparse, kw_only=True):
    id: str
    name: str
    status: str
    phone_number_id: str
    template: TemplateName
    counts: Counts
    variants: list[VariantView]
    created_at: Time
    updated_at: Time
    paused_reason: str | None = None
    schedule_at: str | None = None
    csv: CsvReport | None = None  # in the answer to a create with a CSV audience only


class CampaignList(Answer, kw_only=True):
    data: list[Campaign]
    next_cursor: str | None


class RecipientError(Answer, kw_only=True):
    code: int | None
    title: str


class RecipientView(Sparse, kw_only=True):
    to: str
    status: str
    replied: bool = False
    message_id: str | None = None
    error: RecipientError | None = None
    skip_reason: str | None = None


class RecipientList(Answer, kw_only=True):
    data: list[RecipientView]
    next_cursor: str | None


def _refused(problems: list[tuple[str, str]]) -> ApiError:
    shown = problems[:MAX_REPORTED]
    more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
    return ApiError(
        422,
        "validation_failed",
        shown[0][1] + more,
        fields=[{"path": p, "message": m} for p, m in shown],
    )


async def _variants(
    conn: Any, business: str, number: str, body_variants: list[VariantIn]
) -> list[dict[str, Any]]:
    out = []
    for i, v in enumerate(body_variants):
        path = "template" if len(body_variants) == 1 else f"variants[{i}].template"
        found = await templates.approved(
            conn, business, number, v.template.name, v.template.code, path
        )
        out.append({**msgspec.to_builtins(found), "weight": v.weight})
    return out


def _static_check(
    variants: list[dict[str, Any]], recipients: list[RecipientIn], defaults: dict[str, Any]
) -> None:
    """Explicit recipients' variables checked at once (a `{{contact.x}}` value counts as
    given: the contact is read at start)."""
    problems = []
    for i, r in enumerate(recipients):
        values = {
            k: ("x" if "{{contact." in str(v) else v)
            for k, v in {**defaults, **(r.variables or {})}.items()
        }
        for variant in variants:
            try:
                fill(variant, values)
            except MissingVariables as exc:
                problems.append(
                    (
                        f"audience.recipients[{i}].variables",
                        f"{r.to}: missing {', '.join(exc.names)}",
                    )
                )
                break
    if problems:
        raise _refused(problems)


def _missing(variants: list[dict[str, Any]], values: dict[str, Any]) -> list[str]:
    """The parameters `values` leave empty in some variant (a `{{contact.x}}` value counts
    as given: the contact is read at start)."""
    given = {k: ("x" if "{{contact." in str(v) else v) for k, v in values.items()}
    for variant in variants:
        try:
            fill(variant, given)
        except MissingVariables as exc:
            return list(exc.names)
    return []


def _import_csv(
    text: str, variants: list[dict[str, Any]], defaults: dict[str, Any]
) -> tuple[list[RecipientIn], CsvReport]:
    """The CSV's usable recipients and the report; 422 when there is none."""
    parsed = csvimport.parse(text)
    if parsed.problem:
        raise invalid("audience.csv", parsed.problem)
    bad = list(parsed.bad)
    kept = []
    for line, r in zip(parsed.lines, parsed.recipients, strict=True):
        missing = _missing(variants, {**defaults, **r.get("variables", {})})  # type: ignore[dict-item]
        if missing:
            names = ", ".join("{{" + n + "}}" for n in missing)
            bad.append(csvimport.BadRow(line, f"missing {names}"))
        else:
            kept.append(msgspec.convert(r, RecipientIn))
    bad.sort(key=lambda b: b.line)
    if len(kept) > MAX_AUDIENCE:
        raise invalid("audience.csv", f"more than {MAX_AUDIENCE} recipients")
    if not kept:
        problems = [("audience.csv", f"line {b.line}: {b.reason}") for b in bad]
        raise _refused(problems or [("audience.csv", "no recipient in the CSV")])
    report = CsvReport(
        imported=len(kept), rejected=[BadRowView(line=b.line, reason=b.reason) for b in bad]
    )
    return kept, report


def _new_id(key_id: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return "cmp" + secrets.token_hex(12)
    return (
        "cmp"
        + hashlib.sha256(f"{key_id}\x1fcampaign\x1f{idempotency_key}".encode()).hexdigest()[:24]
    )


async def create_campaign(call: Call) -> Reply:
    body, data = await inputs.body(call.request, CreateCampaign)
    audience = body.audience
    given = [audience.tags, audience.recipients, audience.csv]
    if sum(1 for g in given if g is not None) != 1:
        raise invalid("audience", "exactly one of `tags`, `recipients` or `csv`")
    business = call.business_id
    the_id = _new_id(call.principal.key_id, inputs.idempotency_key(call.request))

    async def work(w: Write) -> Reply:
        number = await resolve_number(call, w, body.phone_number_id)
        chosen = body.variants or [VariantIn(template=body.template)]
        variants = await _variants(w.conn, business, number, chosen)
        defaults = dict(body.variables or {})
        report = None
        kept = audience
        if audience.csv is not None:
            recipients, report = _import_csv(audience.csv, variants, defaults)
            kept = AudienceIn(recipients=recipients)  # recorded as explicit recipients
        if audience.recipients is not None:
            _static_check(variants, audience.recipients, defaults)
        event = CampaignDefined(
            campaign_id=the_id,
            business_id=business,
            name=body.name,
            phone_number_id=number,
            variants=variants,
            audience=msgspec.to_builtins(kept),
            variables=defaults,
            schedule_at=body.schedule_at.astimezone(UTC).isoformat() if body.schedule_at else None,
            actor=call.principal.actor,
        )
        await w.append(campaign_command_stream(the_id), [new(event)], NO_STREAM)
        now = datetime.now(UTC)
        answer = _view_of(event, "draft", now, now)
        answer.csv = report
        return Reply(201, answer)

    return await created(call, data, work, wait=READ_MODELS)


def _view_of(e: CampaignDefined, status: str, created_at: datetime, updated: datetime) -> Campaign:
    first = e.variants[0]
    return Campaign(
        id=e.campaign_id,
        name=e.name,
        status=status,
        phone_number_id=e.phone_number_id,
        template=TemplateName(name=first["name"], language=first["language"]),
        counts=Counts(),
        variants=[
            VariantView(
                template=TemplateName(name=v["name"], language=v["language"]),
                weight=v.get("weight", 1),
                counts=Counts(),
            )
            for v in e.variants
        ],
        created_at=created_at,
        updated_at=updated,
        schedule_at=e.schedule_at,
    )


async def _row(conn: Any, business: str, campaign: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM api_campaigns WHERE campaign_id = $1 AND business_id = $2",
        campaign,
        business,
    )
    if row is None:
        raise not_found("campaign")
    return row


def _definition(row: asyncpg.Record) -> dict[str, Any]:
    d = row["definition"]
    return msgspec.json.decode(d) if isinstance(d, str) else d


_COUNTS = """
SELECT variant,
       count(*) AS total,
       count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status IN ('sent', 'delivered', 'read')) AS sent,
       count(*) FILTER (WHERE status IN ('delivered', 'read')) AS delivered,
       count(*) FILTER (WHERE status = 'read') AS read,
       count(*) FILTER (WHERE replied) AS replied,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'skipped') AS skipped
  FROM api_campaign_recipients WHERE campaign_id = $1 GROUP BY variant
"""


async def view(conn: Any, row: asyncpg.Record) -> Campaign:
    d = _definition(row)
    by_variant = {r["variant"]: r for r in await conn.fetch(_COUNTS, row["campaign_id"])}
    fields = tuple(Counts.__struct_fields__)

    def counts(rows: list[asyncpg.Record]) -> Counts:
        return Counts(**{f: sum(r[f] for r in rows) for f in fields})

    first = d["variants"][0]
    return Campaign(
        id=row["campaign_id"],
        name=row["name"],
        status=row["status"],
        phone_number_id=row["phone_number_id"],
        template=TemplateName(name=first["name"], language=first["language"]),
        counts=counts(list(by_variant.values())),
        variants=[
            VariantView(
                template=TemplateName(name=v["name"], language=v["language"]),
                weight=v.get("weight", 1),
                counts=counts([by_variant[i]] if i in by_variant else []),
            )
            for i, v in enumerate(d["variants"])
        ],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        paused_reason=row["paused_reason"],
        schedule_at=d.get("schedule_at"),
    )


async def get_campaign(call: Call) -> Reply:
    campaign = call.path("campaign_id", "campaign")
    row = await _row(call.deps.pool, call.business_id, campaign)
    return Reply(200, await view(call.deps.pool, row))


async def list_campaigns(call: Call) -> Reply:
    limit, cursor = paging(call, "status")
    status = inputs.query_choice(call.request, "status", STATUSES)
    after = cursors.decode(cursor, int, str)
    rows = await call.deps.pool.fetch(
        "SELECT * FROM api_campaigns WHERE business_id = $1"
        " AND ($2::bigint IS NULL OR (sort_position, campaign_id) < ($2, $3))"
        " AND ($4::text IS NULL OR status = $4)"
        " ORDER BY sort_position DESC, campaign_id DESC LIMIT $5",
        call.business_id,
        after[0] if after else None,
        after[1] if after else "",
        status,
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = cursors.encode(rows[-1]["sort_position"], rows[-1]["campaign_id"]) if more else None
    data = [await view(call.deps.pool, r) for r in rows]
    return Reply(200, CampaignList(data=data, next_cursor=nxt))


async def list_recipients(call: Call) -> Reply:
    campaign = call.path("campaign_id", "campaign")
    limit, cursor = paging(call, "status")
    status = inputs.query_choice(call.request, "status", RECIPIENT_STATUSES)
    await _row(call.deps.pool, call.business_id, campaign)
    after = cursors.decode(cursor, int)
    rows = await call.deps.pool.fetch(
        "SELECT * FROM api_campaign_recipients WHERE campaign_id = $1"
        " AND ($2::int IS NULL OR seq > $2) AND ($3::text IS NULL OR status = $3)"
        " ORDER BY seq LIMIT $4",
        campaign,
        after[0] if after else None,
        status,
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    # The list shows the recipients' numbers: each one's contact is a `list` read.
    await access.record_listed(
        call, [ids.contact_id(call.business_id, r["customer"]) for r in rows if r["customer"]]
    )
    data = []
    for r in rows:
        error = r["error"]
        if isinstance(error, str):
            error = msgspec.json.decode(error)
        data.append(
            RecipientView(
                to=r["given"] or r["customer"],
                status=r["status"],
                replied=r["replied"],
                message_id=r["message_id"],
                error=RecipientError(code=error.get("code"), title=error.get("title", ""))
                if error and r["status"] == "failed"
                else None,
                skip_reason=r["skip_reason"],
            )
        )
    nxt = cursors.encode(rows[-1]["seq"]) if more else None
    return Reply(200, RecipientList(data=data, next_cursor=nxt))


# --- commands ------------------------------------------------------------------------------


async def _members(conn: Any, business: str, audience: dict[str, Any]) -> list[Member]:
    def contact_of(row: asyncpg.Record | None) -> dict[str, Any] | None:
        if row is None:
            return None
        attributes = row["attributes"]
        if isinstance(attributes, str):
            attributes = msgspec.json.decode(attributes)
        return {
            "name": row["name"],
            "wa_id": row["wa_id"],
            "user_id": row["user_id"],
            "attributes": attributes or {},
        }

    if audience.get("tags") is not None:
        rows = await conn.fetch(
            "SELECT * FROM api_contacts WHERE business_id = $1 AND tags && $2::text[]"
            " ORDER BY first_seen_at, contact_id LIMIT $3",
            business,
            audience["tags"],
            MAX_AUDIENCE + 1,
        )
        if len(rows) > MAX_AUDIENCE:
            raise invalid("audience.tags", f"more than {MAX_AUDIENCE} contacts")
        return [
            Member(
                r["customer"],
                contact_of(r),
                r["marketing_opt_out"],
                given=r["wa_id"] or r["user_id"] or erased.address(r["customer"]),
            )
            for r in rows
        ]
    members = []
    for r in audience.get("recipients") or []:
        given = r["to"]
        customer = await queries.customer_for(conn, business, given)
        if customer is None:
            raise invalid("audience.recipients", f"{given}: no customer has this key")
        row = await conn.fetchrow(
            "SELECT * FROM api_contacts WHERE business_id = $1 AND customer = $2",
            business,
            customer,
        )
        members.append(
            Member(
                customer,
                contact_of(row) or {"wa_id": given},
                bool(row and row["marketing_opt_out"]),
                dict(r.get("variables") or {}),
                given=given,
            )
        )
    return members


async def _command(call: Call, action: str, allowed: tuple[str, ...]) -> Reply:
    inputs.known_query(call.request, ())
    campaign = call.path("campaign_id", "campaign")
    business = call.business_id
    async with write(call.deps.pool) as w:
        row = await _row(w.conn, business, campaign)
        if row["status"] not in allowed:
            raise conflict(
                "campaign_state",
                f"a {row['status']} campaign cannot {action}",
            )
        events = []
        total, due = 0, None
        if action == "start":
            events, total = await _audience_events(w, business, campaign, row)
            schedule_at = _definition(row).get("schedule_at")
            due = schedule_at if schedule_at and _after_now(schedule_at) else None
        events.append(
            new(
                CampaignCommanded(
                    campaign_id=campaign,
                    business_id=business,
                    action=action,
                    total=total,
                    due_at=due,
                    actor=call.principal.actor,
                ),
                metadata=call.principal.audit,
            )
        )
        try:
            await w.append(campaign_command_stream(campaign), events, row["version"])
        except WrongExpectedVersion as exc:
            raise conflict(
                "campaign_state", "the campaign changed meanwhile; read it again"
            ) from exc
        position = w.position
    await call.deps.consistency.wait(position, READ_MODELS)
    row = await _row(call.deps.pool, business, campaign)
    return Reply(200, await view(call.deps.pool, row))


def _after_now(value: str) -> bool:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) > datetime.now(UTC)


async def _audience_events(
    w: Write, business: str, campaign: str, row: asyncpg.Record
) -> tuple[list[Any], int]:
    d = _definition(row)
    number = row["phone_number_id"]
    # The templates as they are now: one paused or disabled since the draft stops the start.
    variants = []
    for i, v in enumerate(d["variants"]):
        path = "template" if len(d["variants"]) == 1 else f"variants[{i}].template"
        found = await templates.approved(w.conn, business, number, v["name"], v["language"], path)
        variants.append(Variant(msgspec.to_builtins(found), v.get("weight", 1)))
    members = await _members(w.conn, business, d["audience"])
    recipients, missing = materialise(members, variants, d.get("variables") or {})
    if missing:
        where = "audience.recipients" if d["audience"].get("recipients") is not None else "audience"
        raise _refused(
            [
                (f"{where}[{m.member}].variables", f"{m.given}: missing {', '.join(m.names)}")
                for m in missing
            ]
        )
    if not any(r.skip_reason is None for r in recipients):
        raise invalid("audience", "the audience has no one to send to")
    plain = [
        {
            "seq": r.seq,
            "to": r.to,
            "given": r.given,
            "variant": r.variant,
            **(
                {"skip_reason": r.skip_reason}
                if r.skip_reason
                else {
                    "components": r.components,
                    "message_id": recipient_message_id(campaign, r.seq),
                }
            ),
        }
        for r in recipients
    ]
    events = [
        new(
            CampaignAudience(
                campaign_id=campaign,
                business_id=business,
                part=i // PART,
                recipients=plain[i : i + PART],
            )
        )
        for i in range(0, len(plain), PART)
    ]
    return events, len(plain)


async def start(call: Call) -> Reply:
    return await _command(call, "start", ("draft",))


async def pause(call: Call) -> Reply:
    return await _command(call, "pause", ("running", "scheduled"))


async def resume(call: Call) -> Reply:
    return await _command(call, "resume", ("paused",))


async def cancel(call: Call) -> Reply:
    return await _command(call, "cancel", ("draft", "scheduled", "running", "paused"))


_P = "/v1/campaigns/{campaign_id}"
ROUTES = (
    Route(
        "POST", "/v1/campaigns", create_campaign, "Create a campaign (a draft)", "key",
        roles=ADMIN, request=CreateCampaign, status=201, answer=Campaign,
        errors=(400, 404, 422), idempotent=True,
    ),
    Route(
        "GET", "/v1/campaigns", list_campaigns, "Campaigns, newest first", "key",
        answer=CampaignList, errors=(422,),
        query=(Query("status", "a campaign status", {"enum": list(STATUSES)}), *PAGING),
    ),
    Route(
        "GET", _P, get_campaign, "A campaign with its counts", "key",
        answer=Campaign, errors=(404,),
    ),
    Route(
        "GET", _P + "/recipients", list_recipients, "A campaign's recipients, in audience order",
        "key", answer=RecipientList, errors=(404, 422),
        query=(Query("status", "a recipient status", {"enum": list(RECIPIENT_STATUSES)}), *PAGING),
    ),
    Route(
        "POST", _P + "/start", start, "Start: the audience is evaluated now, once", "key",
        roles=ADMIN, answer=Campaign, errors=(404, 409, 422),
    ),
    Route(
        "POST", _P + "/pause", pause, "Pause", "key", roles=ADMIN, answer=Campaign,
        errors=(404, 409),
    ),
    Route(
        "POST", _P + "/resume", resume, "Resume", "key", roles=ADMIN, answer=Campaign,
        errors=(404, 409),
    ),
    Route(
        "POST", _P + "/cancel", cancel, "Cancel", "key", roles=ADMIN, answer=Campaign,
        errors=(404, 409),
    ),
)  # fmt: skip
