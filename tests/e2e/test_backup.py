"""`make backup` and `make restore` (ops/backup.py): a backup of a running stack, restored
into a fresh database with the newest keys, serves the same conversations through the api
of a new stack; a customer erased after the backup does not come back (re-erasure), and the
key dump is a file of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from shared.stack import ROOT
from tests.e2e.api_support import Tenant, make_tenant
from tests.e2e.harness import Running, new_customer, start_stack
from tests.support.fakes import wait_for
from tests.support.infra import start_infra


def ops(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ops", *args],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def conversation_of(tenant: Tenant, customer: str) -> dict[str, object] | None:
    answer = tenant.call("GET", "/v1/conversations")
    assert answer.status == 200, answer
    found = [c for c in answer.json["data"] if c["contact"].get("wa_id") == customer]
    return found[0] if found else None


def test_a_restored_backup_serves_the_same_conversations_and_no_one_erased_since(
    running: Running,
) -> None:
    tenant = make_tenant(running, numbers=1)
    [number] = tenant.numbers
    kept, erased = new_customer(), new_customer()
    kept_text = f"keep me {uuid.uuid4().hex[:8]}"
    erased_text = f"forget me {uuid.uuid4().hex[:8]}"
    tenant.webhook(number, kept, kept_text)
    tenant.webhook(number, erased, erased_text)
    running.fences({kept: number, erased: number})  # both answered: recorded and projected
    wait_for(
        lambda: all(conversation_of(tenant, c) for c in (kept, erased)),
        timeout=30,
        message="both conversations in the read model",
    )
    conversation = conversation_of(tenant, kept)
    assert conversation is not None
    path = f"/v1/conversations/{conversation['id']}"

    def settled() -> bool:
        """Every message projected, and each reply's send (queued, then sent) too: nothing
        in the conversation moves after this (the fake sends no statuses by itself)."""
        data = tenant.call("GET", path + "/messages").json["data"]
        return len(data) >= 4 and all(
            m.get("status") != "queued" for m in data if m["direction"] == "outbound"
        )

    wait_for(settled, timeout=30, message="the kept conversation's messages, sent")
    before = tenant.call("GET", path + "/messages").json
    gone = conversation_of(tenant, erased)
    assert gone is not None

    folder = Path(tempfile.mkdtemp(prefix="wa-backup-"))
    ops(running.env, "backup", "--out", str(folder / "old"))
    assert sorted(p.name for p in (folder / "old").iterdir()) == [
        "data.dump", "keys.dump", "media.tgz",
    ]  # fmt: skip
    assert (folder / "old" / "keys.dump").stat().st_mode & 0o077 == 0
    # Erased after that backup; the keys' newest backup is taken after the erasure.
    contact = gone["contact"]["id"]  # type: ignore[index]
    accepted = tenant.call("POST", f"/v1/contacts/{contact}/erase")
    assert accepted.status == 202, accepted
    erasure = f"/v1/erasures/{accepted.json['erasure_id']}"
    wait_for(
        lambda: tenant.call("GET", erasure).json["status"] == "done",
        timeout=60,
        message="the erasure to complete",
    )
    ops(running.env, "backup", "--out", str(folder / "new"))

    infra = start_infra()
    restored: Running | None = None
    try:
        media = str(folder / "restored-media")
        env = {**running.env, "DATABASE_URL": infra.database_url, "MEDIA_DIR": media}
        ops(env, "restore", str(folder / "old"), "--keys", str(folder / "new" / "keys.dump"))
        restored = start_stack(infra.amqp_url, infra.database_url, MEDIA_DIR=media)
        again = Tenant(restored, tenant.id, tenant.numbers, tenant.keys)
        assert again.call("GET", path).json == tenant.call("GET", path).json
        assert again.call("GET", path + "/messages").json == before
        assert kept_text in str(before)
        # The erased customer: not served, and not in the restored database.
        assert again.call("GET", f"/v1/conversations/{gone['id']}").status == 404
        assert again.call("GET", f"/v1/contacts/{contact}").status == 404
        assert conversation_of(again, erased) is None
        assert (
            restored.sql(
                "SELECT 1 FROM events WHERE strpos(stream_name, $1) > 0"
                " OR strpos(data::text, $1) > 0 OR strpos(data::text, $2) > 0",
                erased,
                erased_text,
            )
            == []
        )
        # The restore analysed what it loaded (pg_restore leaves no statistics).
        assert restored.sql(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'events'"
        )[0]["last_analyze"]
    finally:
        if restored is not None:
            restored.close()
        infra.cleanup()
