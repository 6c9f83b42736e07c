"""What the admin API (and the relay itself, on a 410) can do: plain functions over their
dependencies. Each change is validated, recorded as events with the endpoint's projection,
and then handed to the dispatcher so it acts on it at once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp.abc import AbstractResolver

from services.webhook_relay import domain
from services.webhook_relay.dispatcher import Dispatcher
from services.webhook_relay.domain import Endpoint, InvalidEndpoint
from services.webhook_relay.fanout import conversations_of, deliveries_for
from services.webhook_relay.owner import Directory, owners_of
from services.webhook_relay.ssrf import UnsafeUrl, UrlPolicy, check_registration
from services.webhook_relay.store import Delivery, RelayStore
from shared.eventstore import EventStore, NewEvent, WrongExpectedVersion

log = logging.getLogger("webhook_relay.admin")
REPLAY_BATCH = 500


class NotFound(LookupError):
    pass


# Who asked, for the metadata of the events a change records (`actor`, `actor_role`): set
# for each admin request from what the api says of its caller (X-Actor), so that "who
# changed this endpoint" names the business's key. Empty: the domain's own ("admin",
# or "relay" for its reaction to a 410).
ACTOR: ContextVar[dict[str, str]] = ContextVar("actor", default={})  # noqa: B039


def _audited(events: list[NewEvent]) -> list[NewEvent]:
    actor = ACTOR.get()
    if not actor:
        return events
    return [NewEvent(e.event, e.id, {**e.metadata, **actor}) for e in events]


@dataclass
class Deps:
    relay: RelayStore
    events: EventStore
    policy: UrlPolicy
    resolver: AbstractResolver  # plain DNS, for the registration check
    secret_grace: timedelta
    dispatcher: Dispatcher | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    directory: Directory | None = None  # whose events are whose; None: all the default's


async def _changed(deps: Deps, endpoint: Endpoint, reload_heads: bool = False) -> None:
    if deps.dispatcher is not None:
        await deps.dispatcher.sync_endpoint(endpoint, reload_heads=reload_heads)


async def _get(deps: Deps, endpoint_id: str, business: str | None = None) -> Endpoint:
    """The endpoint; with `business`, only if it is that business's (else NotFound, the same
    as for an id that does not exist: nothing tells another business's apart)."""
    endpoint = await deps.relay.get_endpoint(endpoint_id)
    if endpoint is None or (business is not None and endpoint.business_id != business):
        raise NotFound(f"no endpoint {endpoint_id}")
    return endpoint


async def check_url(deps: Deps, url: object) -> str:
    if not isinstance(url, str) or not url or len(url) > domain.MAX_URL:
        raise InvalidEndpoint("url must be a non-empty string")
    try:
        await check_registration(deps.policy, url, deps.resolver)
    except UnsafeUrl as exc:
        raise InvalidEndpoint(f"url refused: {exc}") from None
    return url


async def create_endpoint(
    deps: Deps,
    url: object,
    description: object = "",
    event_types: list[str] | None = None,
    secret: str | None = None,
    business: str | None = None,
) -> tuple[Endpoint, str]:
    """`business`: whose events it receives (None: the default business's)."""
    checked_url = await check_url(deps, url)
    text = domain.check_description(description)
    types = domain.check_event_types(event_types)
    chosen = domain.check_secret(secret)
    endpoint, events = domain.create(
        domain.new_endpoint_id(),
        checked_url,
        text,
        types,
        chosen,
        deps.now(),
        business_id=business or domain.DEFAULT_BUSINESS,
    )
    saved = await deps.relay.save_endpoint(endpoint, _audited(events), expected_version=-1)
    await _changed(deps, saved)
    log.info("endpoint created", extra={"fields": {"endpoint": saved.endpoint_id}})
    return saved, chosen


async def update_endpoint(
    deps: Deps,
    endpoint_id: str,
    url: object = None,
    description: object = None,
    event_types: list[str] | None = None,
    business: str | None = None,
) -> Endpoint:
    endpoint = await _get(deps, endpoint_id, business)
    endpoint, events = domain.update(
        endpoint,
        deps.now(),
        url=await check_url(deps, url) if url is not None else None,
        description=domain.check_description(description) if description is not None else None,
        event_types=domain.check_event_types(event_types) if event_types is not None else None,
    )
    saved = await deps.relay.save_endpoint(endpoint, _audited(events), endpoint.version)
    await _changed(deps, saved)
    return saved


async def rotate_secret(
    deps: Deps, endpoint_id: str, secret: str | None = None, business: str | None = None
) -> tuple[Endpoint, str]:
    endpoint = await _get(deps, endpoint_id, business)
    chosen = domain.check_secret(secret)
    if any(s.secret == chosen for s in endpoint.secrets):
        raise InvalidEndpoint("the new secret must differ from the current ones")
    rotated, events = domain.rotate_secret(endpoint, chosen, deps.secret_grace, deps.now())
    saved = await deps.relay.save_endpoint(rotated, _audited(events), endpoint.version)
    await _changed(deps, saved)
    log.info("endpoint secret rotated", extra={"fields": {"endpoint": endpoint_id}})
    return saved, chosen


async def set_enabled(
    deps: Deps,
    endpoint_id: str,
    enabled: bool,
    reason: str = "",
    by: str = "admin",
    business: str | None = None,
) -> Endpoint:
    for _ in range(5):  # the relay's own 410 handling may race an operator: just re-read
        endpoint = await _get(deps, endpoint_id, business)
        if enabled:
            changed, events = domain.enable(endpoint, deps.now())
        else:
            changed, events = domain.disable(
                endpoint, reason or "disabled by an operator", by, deps.now()
            )
        try:
            saved = await deps.relay.save_endpoint(changed, _audited(events), endpoint.version)
        except WrongExpectedVersion:
            continue
        await _changed(deps, saved, reload_heads=enabled)
        if events:
            log.info(
                "endpoint enabled" if enabled else "endpoint disabled",
                extra={"fields": {"endpoint": endpoint_id, "by": by}},
            )
        return saved
    raise WrongExpectedVersion(f"endpoint {endpoint_id} keeps changing")


async def disable_gone(deps: Deps, endpoint_id: str, reason: str) -> None:
    """The relay's reaction to 410 Gone: its own doing, whoever's request started the
    delivery (a task inherits the context it was created in)."""
    token = ACTOR.set({})
    try:
        await set_enabled(deps, endpoint_id, False, reason, by="relay")
    except NotFound:
        pass
    finally:
        ACTOR.reset(token)


async def delete_endpoint(deps: Deps, endpoint_id: str, business: str | None = None) -> None:
    endpoint = await _get(deps, endpoint_id, business)
    deleted, events = domain.delete(endpoint, deps.now())
    saved = await deps.relay.save_endpoint(deleted, _audited(events), endpoint.version)
    await _changed(deps, saved)
    log.info("endpoint deleted", extra={"fields": {"endpoint": endpoint_id}})


async def replay_delivery(deps: Deps, delivery_id: str, business: str | None = None) -> Delivery:
    if business is not None and await deps.relay.delivery(delivery_id, business) is None:
        raise NotFound(f"no delivery {delivery_id} of an existing endpoint")
    head = await deps.relay.replay_delivery(delivery_id, deps.now())
    if head is None:
        raise NotFound(f"no delivery {delivery_id} of an existing endpoint")
    endpoint = await _get(deps, head.endpoint_id)
    await _record_replay(deps, endpoint, "delivery", 1, delivery_id=delivery_id)
    await _changed(deps, endpoint, reload_heads=True)
    delivery = await deps.relay.delivery(delivery_id)
    assert delivery is not None
    return delivery


async def replay_dead(deps: Deps, endpoint_id: str, business: str | None = None) -> int:
    endpoint = await _get(deps, endpoint_id, business)
    count = await deps.relay.replay_dead(endpoint_id, deps.now())
    await _record_replay(deps, endpoint, "dead", count)
    await _changed(deps, endpoint, reload_heads=True)
    return count


async def replay_since(
    deps: Deps,
    endpoint_id: str,
    since: datetime,
    until: datetime | None = None,
    business: str | None = None,
) -> int:
    """Every catalogue event the endpoint subscribes to, recorded in [since, until), read
    again from the event store and sent again (same webhook-id as before, if it had one).
    Events the live subscription has not reached yet are left to it. Only the endpoint's
    business's events, as the live subscription."""
    endpoint = await _get(deps, endpoint_id, business)
    start = await deps.relay.position_at(since)
    end = await deps.relay.checkpoint()
    count = 0
    position = start
    while position is not None and position < end:
        events = await deps.events.read_all(after=position, limit=REPLAY_BATCH)
        if not events:
            break
        wanted = [
            e
            for e in events
            if e.position <= end
            and e.recorded_at >= since
            and (until is None or e.recorded_at < until)
        ]
        conversations = await conversations_of(wanted, deps.events)
        rows = deliveries_for(
            wanted,
            [endpoint],
            only_after_creation=False,
            conversations=conversations,
            owners=await owners_of(wanted, deps.directory, conversations),
        )
        count += await deps.relay.replay_events(rows, deps.now())
        position = events[-1].position
    detail = {"since": since.isoformat(), "until": until.isoformat() if until else None}
    await _record_replay(deps, endpoint, "since", count, **detail)
    await _changed(deps, endpoint, reload_heads=True)
    return count


async def _record_replay(
    deps: Deps, endpoint: Endpoint, scope: str, count: int, **detail: object
) -> None:
    await deps.relay.record_events(
        endpoint.endpoint_id, _audited(domain.replayed(endpoint, scope, count, **detail))
    )
