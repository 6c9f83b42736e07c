"""Which conversation a delivery belongs to, so dedup sees one customer's deliveries in order.

Only a hint for the hash exchange: dedup splits the delivery properly. Deliveries without a
customer (account updates, template changes) hash on the business account id.
"""

from __future__ import annotations

from typing import Any


def routing_key(payload: Any) -> str:
    try:
        entry = payload["entry"][0]
        value = entry["changes"][0]["value"]
        phone = value.get("metadata", {}).get("phone_number_id", "")
        if value.get("messages"):
            return f"{phone}.{value['messages'][0].get('from', '')}"
        if value.get("statuses"):
            return f"{phone}.{value['statuses'][0].get('recipient_id', '')}"
        return str(entry.get("id", "account"))
    except (KeyError, IndexError, TypeError, AttributeError):
        return "unrouted"
