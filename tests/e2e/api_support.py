"""Helpers of the api's end-to-end tests: a business with its numbers and keys, made through
the api itself with the platform token, and webhooks for its numbers."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.payloads import messages_payload, text_message
from tests.e2e.harness import ApiAnswer, Running, new_customer
from tests.support.fakes import wait_for


def meta_id() -> str:
    return "".join(random.choice("0123456789") for _ in range(15))


@dataclass
class Tenant:
    """A business as its developer sees it: its id, numbers (with their WABA) and keys."""

    running: Running
    id: str
    numbers: dict[str, str] = field(default_factory=dict)  # phone_number_id -> waba_id
    keys: dict[str, str] = field(default_factory=dict)  # role -> key

    @property
    def key(self) -> str:
        return self.keys["admin"]

    def call(
        self, method: str, path: str, body: Any = None, role: str = "admin", **kw: Any
    ) -> ApiAnswer:
        return self.running.api(method, path, body, token=self.keys[role], **kw)

    def conversation_id(self, number: str, customer: str, epoch: int = 0) -> str:
        """The conversation of `customer` with one of the business's numbers."""
        return self.running.conversation_id(number, customer, self.id, epoch)

    def use_graph_token(self, number: str) -> None:
        """The number uses the fake Graph API's own token, which its uploads need. The
        number's first token stays good at the fake: each service's copy of the directory
        learns of the change within a couple of seconds, and a download or a send made with
        the first token meanwhile must not fail (it did: a photo's download was refused
        for all its attempts, and never stored)."""
        token = self.running.graph.access_token
        patched = self.running.api(
            "PATCH", f"/v1/businesses/{self.id}/numbers/{number}", {"access_token": token}
        )
        assert patched.status == 200, patched
        self.running.graph.replace_token(number, token)

    def webhook(self, number: str, customer: str, text: str, **kw: Any) -> str:
        """A customer's text to `number`; returns its wamid."""
        wamid = f"wamid.{uuid.uuid4().hex}"
        payload = text_message(
            text, customer=customer, phone_number_id=number, waba_id=self.numbers[number],
            wamid=wamid, **kw,
        )  # fmt: skip
        status, body = self.running.post(payload)
        assert status == 200, body
        return wamid

    def image(self, number: str, customer: str, caption: str) -> str:
        wamid = f"wamid.{uuid.uuid4().hex}"
        message = {
            "from": customer,
            "id": wamid,
            "timestamp": str(int(time.time())),
            "type": "image",
            "image": {"id": uuid.uuid4().hex, "mime_type": "image/jpeg", "caption": caption},
        }
        payload = messages_payload([message], customer, number, waba_id=self.numbers[number])
        status, body = self.running.post(payload)
        assert status == 200, body
        return wamid

    def conversation(self, number: str, customer: str, within: float = 20.0) -> dict[str, Any]:
        """The conversation, once the read model has it."""
        found: dict[str, Any] = {}

        def there() -> bool:
            answer = self.call("GET", f"/v1/conversations/{self.conversation_id(number, customer)}")
            if answer.status == 200:
                found.update(answer.json)
            return answer.status == 200

        wait_for(there, timeout=within, message=f"conversation {number} of {customer}")
        return found


def make_tenant(running: Running, numbers: int = 2, name: str = "") -> Tenant:
    answer = running.api("POST", "/v1/businesses", {"name": name or f"biz {uuid.uuid4().hex[:6]}"})
    assert answer.status == 201, answer
    tenant = Tenant(running, answer.json["id"])
    waba = meta_id()
    for _ in range(numbers):
        number = meta_id()
        answer = running.api(
            "POST",
            f"/v1/businesses/{tenant.id}/numbers",
            {
                "phone_number_id": number,
                "waba_id": waba,
                "display_phone_number": "+1 555 0100",
                "access_token": f"token-{number}",
            },
        )
        assert answer.status == 201, answer
        tenant.numbers[number] = waba
        # The fake Graph API takes this number's own token, and no other, for it.
        running.graph.tokens[number] = f"token-{number}"
    for role in ("admin", "agent", "viewer"):
        answer = running.api(
            "POST", f"/v1/businesses/{tenant.id}/api-keys", {"name": role, "role": role}
        )
        assert answer.status == 201, answer
        tenant.keys[role] = answer.json["key"]
    return tenant


__all__ = ["Tenant", "make_tenant", "meta_id", "new_customer"]
