"""Build Meta-shaped webhook payloads (for `demo` and tests): the same shape Meta posts."""

from __future__ import annotations

import time
import uuid
from typing import Any


def text_message(
    text: str,
    customer: str = "15550001111",
    phone_number_id: str = "100000000000001",
    name: str = "Demo Customer",
    wamid: str | None = None,
    waba_id: str = "200000000000001",
) -> dict[str, Any]:
    return messages_payload(
        [
            {
                "from": customer,
                "id": wamid or f"wamid.{uuid.uuid4().hex}",
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": text},
            }
        ],
        customer=customer,
        phone_number_id=phone_number_id,
        name=name,
        waba_id=waba_id,
    )


def messages_payload(
    messages: list[dict[str, Any]],
    customer: str,
    phone_number_id: str = "100000000000001",
    name: str = "Demo Customer",
    waba_id: str = "200000000000001",
) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550009999",
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": customer}],
                            "messages": messages,
                        },
                    }
                ],
            }
        ],
    }


def status_payload(
    wamid: str,
    status: str,
    recipient: str,
    phone_number_id: str = "100000000000001",
    timestamp: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "recipient_id": recipient,
        "timestamp": timestamp or str(int(time.time())),
    }
    if errors:
        item["errors"] = errors
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "200000000000001",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550009999",
                                "phone_number_id": phone_number_id,
                            },
                            "statuses": [item],
                        },
                    }
                ],
            }
        ],
    }
