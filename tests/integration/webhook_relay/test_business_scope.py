"""The relay per business, in-process on real PostgreSQL: each business's endpoint gets its
own conversations' events and never the other's; the scoped store pages a business's
deliveries by (created_at, id) without a gap or a repeat (deliveries of one batch share
their created_at); a delivery or an endpoint of another business is not found, and
replay-since of an endpoint sends again only its business's events."""

from __future__ import annotations

import uuid

import pytest

from services.webhook_relay import service
from services.webhook_relay.service import NotFound
from tests.integration.webhook_relay.conftest import running_relay, until
from tests.support.crm_fakes import FakeCRM
from tests.unit.test_webhook_relay_owner import FakeDirectory


def cid(number: str) -> str:
    return f"{number}.{uuid.uuid4().int % 10**12}"


async def test_each_business_gets_its_own_events_and_sees_only_its_own(
    relay_database_url: str, crm: FakeCRM, crm2: FakeCRM
) -> None:
    async with running_relay(relay_database_url, directory=FakeDirectory()) as r:
        a, _ = await service.create_endpoint(r.deps, crm.endpoint_url, business="biz_a")
        b, _ = await service.create_endpoint(r.deps, crm2.endpoint_url, business="biz_b")
        of_a = [cid("111") for _ in range(3)]  # number 111 is biz_a's, 222 biz_b's
        of_b = cid("222")
        for c in of_a:
            await r.conversation(c, 3)
        await r.conversation(of_b, 2)
        await until(lambda: sum(len(crm.events(c)) for c in of_a) == 9, message="A's nine")
        await until(lambda: len(crm2.events(of_b)) == 2, message="B's two")
        # Fence: B's events reached B's CRM, so their fan-out has committed; A's endpoint
        # has no delivery of B's conversation, nor did A's CRM get one.
        assert crm.events(of_b) == [] and all(crm2.events(c) == [] for c in of_a)

        # A's deliveries, two by two: every one once, newest first, none of B's.
        pages: list[str] = []
        before = before_id = None
        while True:
            page = await r.relay.list_deliveries(
                None, None, 2, before, business_id="biz_a", before_id=before_id
            )
            if not page:
                break
            pages += [d.delivery_id for d in page]
            before, before_id = page[-1].created_at, page[-1].delivery_id
        everything = await r.relay.list_deliveries(None, None, 500, business_id="biz_a")
        assert len(pages) == len(set(pages)) == len(everything) >= 9
        assert pages == [d.delivery_id for d in everything]
        assert {d.endpoint_id for d in everything} == {a.endpoint_id}

        # Another business's delivery or endpoint is not found, whatever the path.
        theirs = (await r.relay.list_deliveries(b.endpoint_id, None, 1))[0]
        assert await r.relay.delivery(theirs.delivery_id, "biz_a") is None
        assert await r.relay.delivery(theirs.delivery_id, "biz_b") is not None
        with pytest.raises(NotFound):
            await service.replay_delivery(r.deps, theirs.delivery_id, business="biz_a")
        with pytest.raises(NotFound):
            await service.replay_since(r.deps, b.endpoint_id, a.created_at, business="biz_a")
        assert [e.endpoint_id for e in await r.relay.list_endpoints(business_id="biz_a")] == [
            a.endpoint_id
        ]

        # Replaying A's period sends again A's events only.
        count = await service.replay_since(r.deps, a.endpoint_id, a.created_at, business="biz_a")
        assert count == 9
        again = await r.relay.list_deliveries(a.endpoint_id, None, 500)
        assert {d.order_key for d in again} == set(of_a)
