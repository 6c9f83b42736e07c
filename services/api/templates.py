"""Templates (business key): `POST /v1/templates/sync` reads every template of the
business's WABAs from the Graph API (all pages) and records what changed as
TemplateRecorded; `GET /v1/templates` lists the read model (statuses move with Meta's
webhooks); `POST /v1/templates` creates one at Meta (the WABA's 100 creations an hour: a
429 before Meta is asked, and Meta's own cap answered the same). `for_send` is what
`POST /v1/messages` asks about a `type: template` message: the template known, APPROVED,
in that language, its parameters matching (shared/meta/templates.py), and a MARKETING one
never to a contact who opted out."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from msgspec import Meta

from services.api import cursor as cursors
from services.api import inputs
from services.api.errors import ApiError, conflict, invalid, not_found, unavailable
from services.api.graph import CAPPED, GraphClient, MetaRefused, MetaUnreachable
from services.api.projections import templates as templates_model
from services.api.routes import ADMIN, PAGING, WRITERS, Call, Query, Reply, Route, created, paging
from services.api.schemas import Answer, Request, Sparse
from services.api.writes import Write, write
from shared.directory import Directory
from shared.events.business import TemplateRecorded, template_stream
from shared.eventstore import Position, new
from shared.meta import templates as rules

READ_MODELS = (templates_model.NAME,)
CREATIONS_PER_HOUR = 100  # per WABA (platform-facts, part 2)
STATUSES = (
    "APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "FLAGGED", "IN_APPEAL",
    "REINSTATED", "ARCHIVED", "LIMIT_EXCEEDED", "DELETED",
)  # fmt: skip
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
# A send naming a template not known here syncs the business first, at most this often.
ON_DEMAND_EVERY = 10.0

TemplateName = Annotated[str, Meta(pattern=r"^[a-z0-9_]{1,512}$")]
LanguageCode = Annotated[str, Meta(pattern=r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")]


class Template(Sparse, kw_only=True):
    id: str
    name: str
    language: str
    category: str
    status: str
    parameter_format: str
    components: list[Any]
    waba_id: str
    quality: str | None = None


class TemplateList(Answer, kw_only=True):
    data: list[Template]
    next_cursor: str | None


class Synced(Answer, kw_only=True):
    synced: int


class CreateTemplate(Request, kw_only=True):
    name: TemplateName
    language: LanguageCode
    category: Literal["MARKETING", "UTILITY", "AUTHENTICATION"]
    components: Annotated[list[dict[str, Any]], Meta(min_length=1, max_length=10)]
    parameter_format: Literal["POSITIONAL", "NAMED"] = "POSITIONAL"
    waba_id: Annotated[str, Meta(pattern=r"^[0-9]{1,32}$")] | None = None
    allow_category_change: bool | None = None


def _client(call: Call) -> GraphClient:
    return GraphClient.of(call.deps.settings)


async def _wabas(call: Call) -> dict[str, str]:
    """The business's WABAs, each with the token of one of its numbers ("" when none)."""
    rows = await call.deps.pool.fetch(
        "SELECT DISTINCT ON (waba_id) waba_id, phone_number_id FROM directory_numbers"
        " WHERE business_id = $1 ORDER BY waba_id, phone_number_id",
        call.business_id,
    )
    directory = Directory(call.deps.settings, call.deps.pool)
    out = {}
    for row in rows:
        number = await directory.number(row["phone_number_id"])
        out[row["waba_id"]] = number.access_token if number is not None else ""
    return out


def _quality(template: dict[str, Any]) -> str | None:
    q = template.get("quality_score")
    if isinstance(q, dict):
        q = q.get("score")
    return str(q).upper() if isinstance(q, str) and q else None


def _recorded(business: str, waba: str, t: dict[str, Any], origin: str, actor: str) -> Any:
    return TemplateRecorded(
        business_id=business,
        waba_id=waba,
        template_id=str(t["id"]),
        name=str(t.get("name", "")),
        language=str(t.get("language", "")),
        category=str(t.get("category", "")).upper(),
        status=str(t.get("status", "")).upper(),
        parameter_format=str(t.get("parameter_format") or "POSITIONAL").upper(),
        components=t.get("components") if isinstance(t.get("components"), list) else [],
        quality=_quality(t),
        origin=origin,
        actor=actor,
    )


def _same(row: asyncpg.Record, e: TemplateRecorded) -> bool:
    components = row["components"]
    if isinstance(components, str):
        components = msgspec.json.decode(components)
    return (
        row["name"], row["language"], row["category"], row["status"],
        row["parameter_format"], components, row["quality"] or None, row["business_id"],
    ) == (
        e.name, e.language, e.category, e.status, e.parameter_format, e.components,
        e.quality, e.business_id,
    )  # fmt: skip


async def sync_business(call: Call) -> tuple[int, Position | None]:
    """Read every WABA's templates from Meta; record those that changed."""
    wabas = await _wabas(call)
    client = _client(call)
    fetched: dict[str, list[dict[str, Any]]] = {}
    for waba, token in wabas.items():
        if not token:
            continue  # a dry-run number: no Meta account to read
        try:
            fetched[waba] = await client.list_all(waba, token)
        except MetaUnreachable as exc:
            raise unavailable(f"the Graph API is unreachable ({exc})") from exc
        except MetaRefused as exc:
            raise ApiError(
                503,
                "meta_refused",
                f"Meta refused the template list of WABA {waba}: {exc.message}",
                {"Retry-After": "5"},
            ) from exc
    synced = sum(len(v) for v in fetched.values())
    async with write(call.deps.pool) as w:
        for waba, listed in fetched.items():
            rows = await w.conn.fetch("SELECT * FROM api_templates WHERE waba_id = $1", waba)
            known = {r["template_id"]: r for r in rows}
            for t in listed:
                if "id" not in t:
                    continue
                event = _recorded(call.business_id, waba, t, "sync", call.principal.actor)
                row = known.get(event.template_id)
                if row is not None and _same(row, event):
                    continue
                await w.append(template_stream(event.template_id), [new(event)])
        position = w.position
    return synced, position


async def sync(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    synced, position = await sync_business(call)
    await call.deps.consistency.wait(position, READ_MODELS)
    return Reply(200, Synced(synced=synced))


def template(row: asyncpg.Record) -> Template:
    components = row["components"]
    if isinstance(components, str):
        components = msgspec.json.decode(components)
    return Template(
        id=row["template_id"],
        name=row["name"],
        language=row["language"],
        category=row["category"],
        status=row["status"],
        parameter_format=row["parameter_format"],
        components=components,
        waba_id=row["waba_id"],
        quality=row["quality"],
    )


async def list_templates(call: Call) -> Reply:
    limit, cursor = paging(call, "status", "name", "language", "category", "waba_id")
    q = call.request
    status = inputs.query_choice(q, "status", STATUSES)
    category = inputs.query_choice(q, "category", CATEGORIES)
    after = cursors.decode(cursor, int, str)
    args: list[Any] = [call.business_id, after[0] if after else None, after[1] if after else ""]
    where = [
        "business_id = $1",
        "($2::bigint IS NULL OR (sort_position, template_id) < ($2, $3))",
    ]
    for column, value in (
        ("status", status),
        ("category", category),
        ("name", inputs.query_text(q, "name", 512)),
        ("language", inputs.query_text(q, "language", 20)),
        ("waba_id", inputs.query_text(q, "waba_id", 32)),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    args.append(limit + 1)
    rows = await call.deps.pool.fetch(
        "SELECT * FROM api_templates WHERE " + " AND ".join(where)
        + f" ORDER BY sort_position DESC, template_id DESC LIMIT ${len(args)}",
        *args,
    )  # fmt: skip
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = cursors.encode(rows[-1]["sort_position"], rows[-1]["template_id"]) if more else None
    return Reply(200, TemplateList(data=[template(r) for r in rows], next_cursor=nxt))


def _placeholders_fit(body: CreateTemplate) -> None:
    """Positional placeholders are {{1}}..{{n}}; named ones are lower-case names."""
    for i, component in enumerate(body.components):
        texts = [component.get("text")]
        for button in component.get("buttons") or []:
            if isinstance(button, dict):
                texts.append(button.get("url"))
        names = [
            n for t in texts for n in rules.PLACEHOLDER.findall(t if isinstance(t, str) else "")
        ]
        if not names:
            continue
        if body.parameter_format == "POSITIONAL":
            if not all(n.isdigit() for n in names):
                raise invalid(
                    f"components[{i}]", "a POSITIONAL template's placeholders are {{1}}, {{2}}, ..."
                )
            wanted = [str(k) for k in range(1, len(set(names)) + 1)]
            if sorted(set(names), key=int) != wanted:
                raise invalid(
                    f"components[{i}]", "placeholders must be numbered from {{1}} without gaps"
                )
        elif not all(n[0].isalpha() and n.islower() for n in names):
            raise invalid(
                f"components[{i}]", "a NAMED template's placeholders are lower-case names"
            )


async def create_template(call: Call) -> Reply:
    body, data = await inputs.body(call.request, CreateTemplate)
    _placeholders_fit(body)
    wabas = await _wabas(call)
    if body.waba_id is not None:
        if body.waba_id not in wabas:
            raise not_found("WABA")
        waba = body.waba_id
    elif len(wabas) == 1:
        waba = next(iter(wabas))
    else:
        why = "the business has several WABAs" if wabas else "the business has no number"
        raise invalid("waba_id", f"required: {why}")
    token = wabas[waba]
    if not token:
        raise conflict("no_access_token", "the WABA's numbers have no access token (dry run)")

    async def work(w: Write) -> Reply:
        since = datetime.now(UTC) - timedelta(hours=1)
        made = await w.conn.fetch(
            "SELECT created_here_at FROM api_templates WHERE waba_id = $1"
            " AND created_here_at > $2 ORDER BY created_here_at",
            waba,
            since,
        )
        if len(made) >= CREATIONS_PER_HOUR:
            free_at = made[-CREATIONS_PER_HOUR]["created_here_at"] + timedelta(hours=1)
            wait = max(1, int((free_at - datetime.now(UTC)).total_seconds()) + 1)
            raise _capped(wait)
        meta_body = {
            "name": body.name,
            "language": body.language,
            "category": body.category,
            "parameter_format": body.parameter_format,
            "components": body.components,
        }
        if body.allow_category_change is not None:
            meta_body["allow_category_change"] = body.allow_category_change
        try:
            answer = await _client(call).create(waba, token, meta_body)
        except MetaUnreachable as exc:
            raise unavailable(f"the Graph API is unreachable ({exc})") from exc
        except MetaRefused as exc:
            if exc.code in CAPPED or exc.status == 429:
                raise _capped(3600) from exc
            raise invalid("components", f"Meta refused the template: {exc.message}") from exc
        made_one = {
            **meta_body,
            "id": str(answer.get("id", "")),
            "status": answer.get("status") or "PENDING",
            "category": answer.get("category") or body.category,
        }
        if not made_one["id"]:
            raise unavailable("Meta's answer had no template id")
        event = _recorded(call.business_id, waba, made_one, "created", call.principal.actor)
        await w.append(template_stream(event.template_id), [new(event)])
        return Reply(
            201,
            Template(
                id=event.template_id, name=event.name, language=event.language,
                category=event.category, status=event.status,
                parameter_format=event.parameter_format, components=event.components,
                waba_id=waba,
            ),
        )  # fmt: skip

    return await created(call, data, work, wait=READ_MODELS)


def _capped(seconds: int) -> ApiError:
    return ApiError(
        429,
        "quota_exceeded",
        f"Meta takes at most {CREATIONS_PER_HOUR} template creations per WABA per hour",
        {"Retry-After": str(seconds)},
    )


# --- sends ---------------------------------------------------------------------------------

_last_on_demand: dict[str, float] = {}
_on_demand_locks: dict[str, asyncio.Lock] = {}


async def _known(call: Call, name: str) -> bool:
    return bool(
        await call.deps.pool.fetchval(
            "SELECT 1 FROM api_templates WHERE business_id = $1 AND name = $2 LIMIT 1",
            call.business_id,
            name,
        )
    )


async def ensure_known(call: Call, name: str) -> None:
    """A send naming a template this business has never synced: sync once first (Meta gives
    every WABA `hello_world`; a template made in Meta's own tools is sendable at once), at
    most every ON_DEMAND_EVERY seconds per business."""
    if await _known(call, name):
        return
    lock = _on_demand_locks.setdefault(call.business_id, asyncio.Lock())
    async with lock:
        if await _known(call, name):
            return
        last = _last_on_demand.get(call.business_id, 0.0)
        if time.monotonic() - last < ON_DEMAND_EVERY:
            return
        _last_on_demand[call.business_id] = time.monotonic()
        try:
            _, position = await sync_business(call)
        except ApiError as exc:
            # Meta away or the number's token refused: whether the template exists is not
            # known, which is not the client's mistake (a 422 would say it was); retry later.
            _last_on_demand.pop(call.business_id, None)
            raise unavailable(
                f"template {name!r} is not synced and the business's templates could not be "
                f"read from Meta now ({exc.code})"
            ) from exc
        await call.deps.consistency.wait(position, READ_MODELS)


async def approved(
    conn: Any, business: str, number: str, name: str, code: str, path: str = "template"
) -> Template:
    """The APPROVED template `name` in language `code` of the number's WABA, or the 422
    that says what is wrong (`path` prefixes the fields)."""
    waba = await conn.fetchval(
        "SELECT waba_id FROM directory_numbers WHERE phone_number_id = $1", number
    )
    rows = await conn.fetch(
        "SELECT * FROM api_templates WHERE business_id = $1 AND name = $2"
        " AND ($3::text IS NULL OR waba_id = $3)",
        business,
        name,
        waba,
    )
    if not rows:
        raise invalid(f"{path}.name", f"no template {name!r} in the number's WABA (synced)")
    row = next((r for r in rows if r["language"] == code), None)
    if row is None:
        have = ", ".join(sorted(r["language"] for r in rows))
        raise invalid(f"{path}.language.code", f"{name!r} exists in {have}, not {code}")
    if row["status"] != rules.SENDABLE:
        raise invalid(
            f"{path}.name", f"{name!r} ({code}) is {row['status']}: only APPROVED ones are sent"
        )
    return template(row)


async def for_send(
    w: Write, business: str, number: str, customer: str, given: dict[str, Any]
) -> dict[str, Any]:
    """The template the send names, checked; raises the 422 or 409 that refuses it. Its
    `variables`, when given, become its components (in `given`)."""
    found = await approved(w.conn, business, number, given["name"], given["language"]["code"])
    shape = {"parameter_format": found.parameter_format, "components": found.components}
    variables = given.pop("variables", None)
    if variables is not None:
        if given.get("components"):
            raise invalid("template.variables", "give the components or the variables, not both")
        contact = await _contact(w.conn, business, customer)
        try:
            given["components"] = rules.fill(shape, variables, contact)
        except rules.MissingVariables as missing:
            raise ApiError(
                422,
                "validation_failed",
                f"the template needs {missing}",
                fields=[
                    {"path": f"template.variables.{n}", "message": "missing (or empty)"}
                    for n in missing.names
                ],
            ) from None
        if not given["components"]:
            given.pop("components")
    problems = rules.check(shape, given.get("components"))
    if problems:
        raise ApiError(
            422,
            "validation_failed",
            problems[0].message,
            fields=[{"path": p.path, "message": p.message} for p in problems],
        )
    if found.category == "MARKETING":
        opted_out = await w.conn.fetchval(
            "SELECT c.marketing_opt_out FROM api_contact_ids i JOIN api_contacts c"
            " USING (contact_id) WHERE i.business_id = $1 AND i.id = $2",
            business,
            customer,
        )
        if opted_out:
            raise conflict("opted_out", "the customer opted out of marketing messages")
    return msgspec.to_builtins(found)


async def _contact(conn: Any, business: str, customer: str) -> dict[str, Any] | None:
    """The contact's fields a variable may name (`{{contact.name}}`, an attribute)."""
    row = await conn.fetchrow(
        "SELECT c.name, c.wa_id, c.user_id, c.attributes FROM api_contact_ids i"
        " JOIN api_contacts c USING (contact_id) WHERE i.business_id = $1 AND i.id = $2",
        business,
        customer,
    )
    return dict(row) if row is not None else None


_FILTERS = (
    Query("status", "APPROVED, PENDING, REJECTED, PAUSED, ...", {"enum": list(STATUSES)}),
    Query("name", "the template's name"),
    Query("language", "a language code, e.g. en_US"),
    Query("category", "MARKETING, UTILITY or AUTHENTICATION", {"enum": list(CATEGORIES)}),
    Query("waba_id", "one of the business's WABAs"),
)
ROUTES = (
    Route(
        "POST", "/v1/templates/sync", sync, "Read every template of the business's WABAs from"
        " Meta (all pages)", "key", roles=WRITERS, answer=Synced, errors=(422, 503),
    ),
    Route(
        "GET", "/v1/templates", list_templates, "The business's templates, newest first", "key",
        answer=TemplateList, errors=(422,), query=(*_FILTERS, *PAGING),
    ),
    Route(
        "POST", "/v1/templates", create_template, "Create a template at Meta", "key",
        roles=ADMIN, request=CreateTemplate, status=201, answer=Template,
        errors=(400, 404, 409, 422, 429, 503), idempotent=True,
    ),
)  # fmt: skip
