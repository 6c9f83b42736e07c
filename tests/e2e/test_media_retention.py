"""Media retention through the stack (its own, with the retention check every second): a
business keeps its customers' files 30 days (`PUT /v1/privacy/retention`, `media_days`); a
message older than that loses its file (deleted from the store, `media_expired`, MediaExpired
recorded) and keeps its caption; a newer one keeps its file; a file the same customer sent
again recently is kept for the newer message; another business without a media retention
keeps its old files."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.api_support import Tenant, make_tenant
from tests.e2e.harness import Running, new_customer, own_stack
from tests.e2e.test_privacy_media import send_photo
from tests.support.fakes import wait_for

TIMEOUT = 45.0


@pytest.fixture(scope="module")
def checking() -> Iterator[Running]:
    with own_stack(RETENTION_CHECK_SECONDS="1") as running:
        yield running


def _tenant(running: Running) -> tuple[Tenant, str]:
    tenant = make_tenant(running, numbers=1)
    [number] = tenant.numbers
    tenant.use_graph_token(number)
    return tenant, number


def _stored(running: Running, tenant: Tenant, cid: str, wamid: str) -> bool:
    return tenant.call("GET", f"/v1/conversations/{cid}/messages/{wamid}/media").status == 200


def _age(running: Running, wamid: str, days: int) -> None:
    """The message as if it came `days` ago (in the read model the expiry reads)."""
    running.sql(
        "UPDATE api_messages SET created_at = now() - make_interval(days => $2)"
        " WHERE message_id = $1",
        wamid,
        days,
    )


def test_files_past_the_media_retention_are_deleted(checking: Running) -> None:
    running = checking
    tenant, number = _tenant(running)
    other, other_number = _tenant(running)
    refused = tenant.call("PUT", "/v1/privacy/retention",
                          {"contacts_inactive_days": None, "media_days": 0})  # fmt: skip
    assert refused.status == 422 and "media_days" in str(refused.json), refused
    put = tenant.call("PUT", "/v1/privacy/retention",
                      {"contacts_inactive_days": None, "media_days": 30})  # fmt: skip
    assert put.status == 200, put
    assert (put.json["media_days"], put.json["effective_media_days"]) == (30, 30)
    assert put.json["effective_days"] is None  # contacts are kept: only files go

    customer, repeat = new_customer(), new_customer()
    cid, repeat_cid = (
        tenant.conversation_id(number, customer),
        tenant.conversation_id(number, repeat),
    )
    old = send_photo(running, tenant, number, customer, os.urandom(2048))
    recent = send_photo(running, tenant, number, customer, os.urandom(2048))
    same = os.urandom(2048)
    old_copy = send_photo(running, tenant, number, repeat, same)
    new_copy = send_photo(running, tenant, number, repeat, same)
    legacy, legacy_other = new_customer(), new_customer()
    legacy_cid, legacy_other_cid = (
        tenant.conversation_id(number, legacy),
        tenant.conversation_id(number, legacy_other),
    )
    shared_old = send_photo(running, tenant, number, legacy, os.urandom(2048))
    shared_new = send_photo(running, tenant, number, legacy_other, os.urandom(2048))
    other_customer = new_customer()
    other_cid = other.conversation_id(other_number, other_customer)
    other_old = send_photo(running, other, other_number, other_customer, os.urandom(2048))
    pending = [(cid, old), (cid, recent), (repeat_cid, old_copy), (repeat_cid, new_copy),
               (legacy_cid, shared_old), (legacy_other_cid, shared_new)]  # fmt: skip
    wait_for(
        lambda: (
            all(_stored(running, tenant, c, w) for c, w in pending)
            and _stored(running, other, other_cid, other_old)
        ),
        timeout=TIMEOUT,
        message="every file stored and served",
    )
    [old_key] = [e["store_key"] for e in running.events_of_type("MediaStored", wamid=old)]
    assert (running.media_dir / old_key).is_file()

    # A file kept before the store's dedup was per customer serves two customers: the
    # second's message names the first's file (as such files' messages do).
    [legacy_key] = [e["store_key"] for e in running.events_of_type("MediaStored", wamid=shared_old)]
    running.sql(
        "UPDATE api_messages SET media = jsonb_set(media, '{store_key}', to_jsonb($2::text))"
        " WHERE message_id = $1",
        shared_new,
        legacy_key,
    )
    _age(running, shared_old, 31)
    # The other business's old file is aged first: every check that expires ours has seen it.
    _age(running, other_old, 400)
    _age(running, old_copy, 31)
    _age(running, old, 31)

    def expired_answer() -> bool:
        # The file goes first, then its MediaExpired: the read model says so a moment later.
        answer = tenant.call("GET", f"/v1/conversations/{cid}/messages/{old}/media")
        return answer.status == 409 and answer.json["error"]["code"] == "media_expired"

    wait_for(expired_answer, timeout=TIMEOUT, message="the old file expired")
    gone = tenant.call("GET", f"/v1/conversations/{cid}/messages/{old}/media")
    assert gone.json["error"]["code"] == "media_expired", gone
    assert not (running.media_dir / old_key).exists()
    [expired] = running.events_of_type("MediaExpired", wamid=old)
    assert expired["days"] == 30 and expired["store_key"] == old_key
    listed = {
        m["id"]: m for m in tenant.call("GET", f"/v1/conversations/{cid}/messages").json["data"]
    }
    assert listed[old]["media"]["expired"] is True and "expired" not in listed[recent]["media"]
    assert _stored(running, tenant, cid, recent)
    # The repeated file: the old message's is expired, the file kept for the newer one.
    wait_for(
        lambda: bool(running.events_of_type("MediaExpired", wamid=old_copy)),
        timeout=TIMEOUT,
        message="the old copy expired",
    )
    assert _stored(running, tenant, repeat_cid, new_copy)
    # The file two customers share stays for the one whose message is not due.
    wait_for(
        lambda: bool(running.events_of_type("MediaExpired", wamid=shared_old)),
        timeout=TIMEOUT,
        message="the shared file's old message expired",
    )
    assert (running.media_dir / legacy_key).is_file()
    assert _stored(running, tenant, legacy_other_cid, shared_new)
    # No retention there: the business's year-old file is still served, and never expired.
    assert _stored(running, other, other_cid, other_old)
    assert running.events_of_type("MediaExpired", wamid=other_old) == []
    assert running.metric("api", "media_expired_total") >= 2
