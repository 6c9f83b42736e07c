"""A number's bot through the api (business key, role admin): publish a definition, read the
current one, simulate one.

Publishing is the one way a number's bot changes: `BotPublished` in `bot-<phone_number_id>`
(the api is that stream's only writer), version N at stream version N - 1, and in the same
transaction `directory_numbers.bot_version` (the directory's row, the api's own table), so
two publishes at once cannot both be version N. The conversation reads the stream's new
events before each answer, so the next customer message follows the new version.

The simulator runs shared/bot's own code on the definition with no I/O: no call to Meta or
the LLM, nothing recorded."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from services.api import inputs
from services.api import schemas as s
from services.api.botpublish import DEFAULT_BOT, locked_version, publish, published
from services.api.errors import ApiError, conflict, invalid, not_found
from services.api.routes import Call, Reply
from services.api.writes import write
from shared.bot import (
    SIMULATED_LLM_ANSWER,
    Bot,
    Contact,
    SimulationError,
    load,
    problems,
    simulate,
)
from shared.bot.source import read
from shared.events.business import BotPublished
from shared.eventstore import RecordedEvent

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
JSON_TYPE = "application/json"
MAX_FIELDS = 50  # problems listed in one 422


def _invalid_definition(found: list[Any], where: str = "") -> ApiError:
    fields = [
        {
            "path": f"{where}.{p.path}" if where and p.path else (where or p.path),
            "message": p.message,
        }
        for p in found[:MAX_FIELDS]
    ]
    first = fields[0]
    return ApiError(
        422,
        "validation_failed",
        f"the bot definition is invalid: {first['path'] or '(document)'}: {first['message']}",
        fields=fields,
    )


async def _source(call: Call) -> tuple[str, str]:
    """The body as a definition's text and its content type (YAML as is; JSON checked as
    JSON first, so malformed JSON is a 400 like everywhere in the api)."""
    kind = call.request.content_type
    if kind in YAML_TYPES:
        try:
            raw = await call.request.read()
        except (ConnectionError, ValueError) as exc:
            raise ApiError(400, "malformed_body", f"the body could not be read: {exc}") from None
        try:
            return raw.decode("utf-8"), "application/yaml"
        except UnicodeDecodeError:
            raise ApiError(400, "malformed_body", "the body is not UTF-8 text") from None
    if kind == JSON_TYPE:
        data = await inputs.read_json(call.request)  # 400 for malformed JSON
        if not isinstance(data, dict) or not data:
            raise invalid("", "the definition must be a JSON object")
        # Kept as sent (the body is read once and cached by aiohttp).
        return (await call.request.read()).decode("utf-8"), JSON_TYPE
    raise ApiError(
        415,
        "unsupported_media_type",
        "send the definition as application/yaml or application/json",
        fields=[{"path": "Content-Type", "message": "application/yaml or application/json"}],
    )


async def _owned(call: Call, conn: Any) -> tuple[str, int]:
    """The path's number and its published version; 404 for another business's number."""
    number = call.path("phone_number_id", "number")
    version = await conn.fetchval(
        "SELECT bot_version FROM directory_numbers WHERE phone_number_id = $1 AND business_id = $2",
        number,
        call.business_id,
    )
    if version is None:
        raise not_found("number")
    return number, int(version)


async def put_bot(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    number = call.path("phone_number_id", "number")
    text, content_type = await _source(call)
    found = problems(text)
    async with write(call.deps.pool) as w:
        # Ownership first: another business's number is a 404 whatever the body says.
        await locked_version(w, call.business_id, number)
        if found:
            raise _invalid_definition(found)
        version = await publish(w, call.actor, call.business_id, number, text, content_type)
    return Reply(200, s.BotVersion(version=version))


async def get_bot(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    async with call.deps.pool.acquire() as conn:
        number, current = await _owned(call, conn)
        recorded = await published(conn, number, current)
    if recorded is None:
        return Reply(200, s.BotDefinition(phone_number_id=number, version=0))
    event = recorded.event
    assert isinstance(event, BotPublished)
    data, _ = read(event.source)
    return Reply(
        200,
        s.BotDefinition(
            phone_number_id=number,
            version=event.version,
            definition=data,
            source=event.source,
            content_type=event.content_type,
            published_at=recorded.recorded_at,
        ),
    )


async def simulate_bot(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    body, _ = await inputs.body(call.request, s.SimulateBot)
    async with call.deps.pool.acquire() as conn:
        number, current = await _owned(call, conn)
        recorded = None if body.definition is not None else await published(conn, number, current)
    bot = _bot_of(call, body.definition, recorded)
    at = body.at.timestamp() if body.at is not None else time.time()
    contact = None
    if body.contact is not None:
        c = body.contact
        contact = Contact(
            name=c.name, attributes=c.attributes, tags=tuple(c.tags), opted_out=c.opted_out
        )
    messages = [msgspec.to_builtins(m) for m in body.messages]
    try:
        answer = None if body.llm_fails else (body.llm_answer or SIMULATED_LLM_ANSWER)
        result = simulate(bot, messages, contact, at, llm_answer=answer)
    except SimulationError as exc:
        path, _, message = str(exc).partition(": ")
        raise invalid(path, message or str(exc)) from None
    simulated = s.BotSimulation(
        version=bot.revision,
        replies=result.replies,
        state=msgspec.to_builtins(result.state),
        contact=msgspec.to_builtins(result.contact),
        actions=[msgspec.to_builtins(a) for a in result.actions],
        handled_by=result.handled_by,
        waiting=result.waiting,
    )
    return Reply(200, simulated)


def _bot_of(call: Call, sent: str | dict[str, Any] | None, recorded: RecordedEvent | None) -> Bot:
    """The definition sent in the request, else the published one, else the shipped default
    when this deployment runs it (no LLM key); with an LLM and nothing published there is no
    bot to simulate (the LLM answers every message)."""
    if sent is not None:
        text = sent if isinstance(sent, str) else msgspec.json.encode(sent).decode()
        found = problems(text)
        if found:
            raise _invalid_definition(found, "definition")
        return load(text)
    if recorded is not None:
        event = recorded.event
        assert isinstance(event, BotPublished)
        return load(event.source, revision=event.version)
    if not call.deps.settings.openai_api_key:
        return load(DEFAULT_BOT.read_text())
    raise conflict(
        "no_bot",
        "this number has no bot (the LLM answers it): publish one, or send `definition`",
    )
