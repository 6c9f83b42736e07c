"""Erasure with the media store in S3 (moto's S3-compatible server, real HTTP on loopback)
and voice replies on (ElevenLabs' fake): a customer's photo, their voice note and the bot's
spoken answer are objects in the bucket; after their erasure none of them is, and another
customer's copy of the same photo still is (the store's dedup is per customer)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any, cast

import boto3
import pytest
from moto.server import ThreadedMotoServer

from shared.payloads import messages_payload
from tests.e2e.api_support import Tenant, make_tenant
from tests.e2e.harness import Running, new_customer, own_stack
from tests.support.fakes import wait_for
from tests.support.media_fakes import FakeGraphMedia, FakeOpenAIAudio, audio_sends

BUCKET = "media-erasure"
PREFIX = "wa/"
TIMEOUT = 45.0


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_stack(s3: Any) -> Iterator[Running]:
    with own_stack(
        ELEVENLABS_API_KEY="test-eleven-key",
        MEDIA_S3_BUCKET=BUCKET,
        MEDIA_S3_ENDPOINT_URL=s3.meta.endpoint_url,
        MEDIA_S3_ACCESS_KEY_ID="test",
        MEDIA_S3_SECRET_ACCESS_KEY="test",
        MEDIA_S3_PREFIX=PREFIX,
    ) as running:
        yield running


def objects(s3: Any) -> set[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents", [])
    return {o["Key"] for o in listed}


def post_media(running: Running, tenant: Tenant, number: str, customer: str,
               kind: str, content: bytes, mime: str, says: str = "") -> None:  # fmt: skip
    media = cast(FakeGraphMedia, running.graph).add_media(content, mime)
    if says:
        cast(FakeOpenAIAudio, running.openai).say(content, says)
    body: dict[str, Any] = {"id": media.media_id, "mime_type": mime}
    if kind == "audio":
        body["voice"] = True
    message = {"from": customer, "id": f"wamid.{uuid.uuid4().hex}",
               "timestamp": str(int(time.time())), "type": kind, kind: body}  # fmt: skip
    payload = messages_payload([message], customer, number, "", tenant.numbers[number])
    assert running.post(payload)[0] == 200


def test_an_erasure_deletes_the_customers_objects_in_s3(s3_stack: Running, s3: Any) -> None:
    running = s3_stack
    tenant = make_tenant(running, numbers=1)
    [number] = tenant.numbers
    tenant.use_graph_token(number)
    erased, kept = new_customer(), new_customer()
    photo = os.urandom(2048)
    before = objects(s3)
    post_media(running, tenant, number, erased, "image", photo, "image/jpeg")
    post_media(running, tenant, number, kept, "image", photo, "image/jpeg")
    post_media(running, tenant, number, erased, "audio", os.urandom(3000),
               "audio/ogg; codecs=opus", says="when do you open")  # fmt: skip
    wait_for(lambda: audio_sends(running.graph, erased), timeout=TIMEOUT, message="voice reply")
    # The photo twice (once per customer), the voice note, the spoken answer.
    wait_for(lambda: len(objects(s3) - before) == 4, timeout=TIMEOUT, message="4 objects")
    theirs_and_others = objects(s3) - before

    wait_for(
        lambda: len(tenant.call("GET", f"/v1/contacts?q={erased}").json["data"]) == 1,
        timeout=TIMEOUT,
    )
    contact = tenant.call("GET", f"/v1/contacts?q={erased}").json["data"][0]["id"]
    cid = tenant.conversation_id(number, erased)
    wait_for(
        lambda: len(tenant.call("GET", f"/v1/conversations/{cid}/messages").json["data"]) >= 4,
        timeout=TIMEOUT,
        message="their messages in the read model",
    )
    asked = tenant.call("POST", f"/v1/contacts/{contact}/erase")
    assert asked.status == 202, asked
    erasure = f"/v1/erasures/{asked.json['erasure_id']}"
    wait_for(lambda: tenant.call("GET", erasure).json["status"] == "done", timeout=TIMEOUT,
             message="the erasure done")  # fmt: skip
    left = objects(s3) - before
    # One object left of the four: the other customer's photo, still served to them.
    assert len(left) == 1 and left < theirs_and_others, left
    [(_, kept_body)] = [(k, s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()) for k in left]
    assert kept_body == photo
    counts = running.sql(
        "SELECT counts FROM erasures WHERE erasure_id = $1", asked.json["erasure_id"]
    )[0]["counts"]
    assert json.loads(counts)["media_files"] == 3, counts  # the erasure's own count agrees
