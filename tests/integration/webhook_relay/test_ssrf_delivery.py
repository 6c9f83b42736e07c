"""The SSRF guard at delivery time, against a CRM that really listens on loopback: the relay
must not reach it unless loopback is allowed, whatever form the URL takes.

The endpoints here are written straight into the store, bypassing the registration checks,
as rows recorded before those checks existed would be.
"""

from __future__ import annotations

import aiohttp
import pytest

from services.webhook_relay.domain import Endpoint, Secret
from services.webhook_relay.sender import make_session
from services.webhook_relay.signing import generate_secret
from services.webhook_relay.ssrf import UrlPolicy, unsafe_cause
from shared.events.webhook_relay import EndpointCreated
from shared.eventstore import NewEvent
from tests.integration.webhook_relay.conftest import LOOPBACK, running_relay, until
from tests.integration.webhook_relay.test_dispatch import cid
from tests.support.crm_fakes import FakeCRM

HTTP_ONLY = UrlPolicy(allow_http=True)  # http allowed, loopback not


async def _legacy_endpoint(relay: object, url: str, now: object) -> Endpoint:
    endpoint = Endpoint(
        endpoint_id="ep_" + cid().replace(".", "")[-24:].rjust(24, "0"),
        url=url,
        secrets=(Secret(generate_secret(), now),),  # type: ignore[arg-type]
        created_at=now,  # type: ignore[arg-type]
        updated_at=now,  # type: ignore[arg-type]
    )
    event = NewEvent(EndpointCreated(endpoint_id=endpoint.endpoint_id, url=url))
    return await relay.save_endpoint(endpoint, [event], -1)  # type: ignore[attr-defined, no-any-return]


def _port(crm: FakeCRM) -> str:
    return crm.endpoint_url.split(":")[2].split("/")[0]


@pytest.mark.parametrize(
    ("host", "policy"),
    [
        ("127\u30020\u30020\u30021", HTTP_ONLY),  # ideographic full stops: yarl reads 127.0.0.1
        ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", HTTP_ONLY),  # full-width digits
        ("user:pw@127.0.0.1", LOOPBACK),  # credentials: refused even where loopback is fine
    ],
)
async def test_a_smuggled_url_stored_earlier_is_refused_at_delivery(
    relay_database_url: str, crm: FakeCRM, host: str, policy: UrlPolicy
) -> None:
    url = f"http://{host}:{_port(crm)}{crm.path}"
    async with running_relay(relay_database_url, policy=policy, schedule="5s") as r:
        saved = await _legacy_endpoint(r.relay, url, r.deps.now())
        await r.dispatcher.sync_endpoint(saved)
        await r.conversation(cid(), 1)

        async def attempted() -> bool:
            rows = await r.relay.list_deliveries(saved.endpoint_id, None, 5)
            return bool(rows) and rows[0].attempts >= 1

        await until(attempted, message="one attempt made")
        [row] = await r.relay.list_deliveries(saved.endpoint_id, None, 5)
        assert row.state == "pending" and row.last_status is None
        assert "refused" in (row.last_error or "")
        assert crm.webhooks() == []


async def test_the_connector_refuses_a_literal_address_even_without_the_senders_check(
    crm: FakeCRM,
) -> None:
    """aiohttp never resolves an IP-literal host, so the resolver cannot see it; the socket
    factory does, right before connect()."""
    session = make_session(HTTP_ONLY)
    try:
        with pytest.raises(aiohttp.ClientConnectorError) as err:
            async with session.post(crm.endpoint_url, data=b"{}"):
                pass
        assert unsafe_cause(err.value) is not None
        assert "loopback" in str(unsafe_cause(err.value))
    finally:
        await session.close()
    assert crm.webhooks() == []

    allowed = make_session(LOOPBACK)  # the same request where loopback is allowed
    try:
        async with allowed.post(crm.endpoint_url, data=b"{}") as resp:
            assert resp.status == 200
    finally:
        await allowed.close()
    assert len(crm.webhooks()) == 1
