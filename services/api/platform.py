"""Businesses, their numbers and their keys: the platform token's routes, and a business
admin key's own `/v1/api-keys`. The writes are directory.py's."""

from __future__ import annotations

from services.api import directory, inputs, queries
from services.api import schemas as s
from services.api.errors import not_found
from services.api.routes import Call, Reply, created, paging
from services.api.writes import Write, write


async def _business_of_path(call: Call) -> str:
    business_id = call.path("business_id", "business")
    if await queries.get_business(call.deps.pool, business_id) is None:
        raise not_found("business")
    return business_id


# --- businesses ----------------------------------------------------------------------------


async def create_business(call: Call) -> Reply:
    body, data = await inputs.body(call.request, s.CreateBusiness)

    async def work(w: Write) -> Reply:
        business_id = await directory.create_business(
            w,
            call.actor,
            name=body.name,
            messaging_limit=body.messaging_limit,
            daily_send_quota=body.daily_send_quota,
        )
        return Reply(201, await queries.get_business(w.conn, business_id))

    return await created(call, data, work)


async def list_businesses(call: Call) -> Reply:
    limit, cursor = paging(call)
    return Reply(200, await queries.list_businesses(call.deps.pool, limit, cursor))


async def get_business(call: Call) -> Reply:
    found = await queries.get_business(call.deps.pool, call.path("business_id", "business"))
    if found is None:
        raise not_found("business")
    return Reply(200, found)


# --- numbers -------------------------------------------------------------------------------


async def register_number(call: Call) -> Reply:
    business_id = call.path("business_id", "business")
    body, data = await inputs.body(call.request, s.CreateNumber)

    async def work(w: Write) -> Reply:
        await directory.register_number(w, call.deps.box, call.actor, business_id, body)
        return Reply(201, await queries.get_number(w.conn, business_id, body.phone_number_id))

    return await created(call, data, work)


async def list_business_numbers(call: Call) -> Reply:
    limit, cursor = paging(call)
    business_id = await _business_of_path(call)
    return Reply(200, await queries.list_numbers(call.deps.pool, business_id, limit, cursor))


async def get_business_number(call: Call) -> Reply:
    business_id = await _business_of_path(call)
    found = await queries.get_number(
        call.deps.pool, business_id, call.path("phone_number_id", "number")
    )
    if found is None:
        raise not_found("number")
    return Reply(200, found)


async def update_number(call: Call) -> Reply:
    business_id = call.path("business_id", "business")
    number = call.path("phone_number_id", "number")
    body, _ = await inputs.body(call.request, s.PatchNumber)
    async with write(call.deps.pool) as w:
        await directory.update_number(w, call.deps.box, call.actor, business_id, number, body)
        found = await queries.get_number(w.conn, business_id, number)
    return Reply(200, found)


# --- keys (platform: the path's business; a business admin key: its own) ---------------------


async def _issue(call: Call, business_id: str) -> Reply:
    body, data = await inputs.body(call.request, s.CreateApiKey)

    async def work(w: Write) -> Reply:
        key_id, key = await directory.issue_key(w, call.actor, business_id, body.name, body.role)
        row = await queries.get_key(w.conn, business_id, key_id)
        assert row is not None
        answer = s.ApiKeyCreated(
            id=key_id, name=row.name, role=row.role, key=key, created_at=row.created_at
        )
        return Reply(201, answer)

    # The answer shows the key: an Idempotency-Key's copy of it is kept sealed.
    return await created(call, data, work, secret=True)


async def _list_keys(call: Call, business_id: str) -> Reply:
    limit, cursor = paging(call)
    return Reply(200, await queries.list_keys(call.deps.pool, business_id, limit, cursor))


async def _revoke(call: Call, business_id: str) -> Reply:
    key_id = call.path("key_id", "API key")
    async with write(call.deps.pool) as w:
        await directory.revoke_key(w, call.actor, business_id, key_id)
    return Reply(204)


async def issue_business_key(call: Call) -> Reply:
    return await _issue(call, call.path("business_id", "business"))


async def list_business_keys(call: Call) -> Reply:
    return await _list_keys(call, await _business_of_path(call))


async def revoke_business_key(call: Call) -> Reply:
    return await _revoke(call, call.path("business_id", "business"))


async def issue_own_key(call: Call) -> Reply:
    return await _issue(call, call.business_id)


async def list_own_keys(call: Call) -> Reply:
    return await _list_keys(call, call.business_id)


async def revoke_own_key(call: Call) -> Reply:
    return await _revoke(call, call.business_id)
