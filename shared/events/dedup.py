"""Events written by dedup: each item of Meta's deliveries, recorded once."""

from __future__ import annotations

from typing import Any

from shared.crypto.erased import address
from shared.eventstore import Event


def inbox_stream(conversation_id: str) -> str:
    """A customer's messages in the order they were recorded: the version is their `seq`."""
    return f"inbox-{conversation_id}"


def message_stream(wamid: str) -> str:
    """One message the business sent, and every status Meta reported for it."""
    return f"message-{wamid}"


def account_stream(waba_id: str) -> str:
    return f"account-{waba_id}"


def identity_stream(business_id: str, customer_id: str) -> str:
    return f"identity-{business_id}.{customer_id}"


def quarantine_stream(delivery_id: str) -> str:
    return f"quarantine-{delivery_id}"


class MessageReceived(Event, kw_only=True):
    """A customer's message (any type: text, media, reaction, ...), recorded once by its
    wamid. Stream `inbox-<conversation_id>`; its version there is the message's `seq`."""

    conversation_id: str
    business_id: str = ""  # the number's business; "" : no business owns it (not answered)
    waba_id: str = ""
    phone_number_id: str
    display_phone_number: str = ""
    customer: str  # the customer's key: a pseudonym of the first id Meta gave them
    wa_id: str = ""  # the customer's WhatsApp id (phone number), when Meta sent it
    user_id: str = ""  # the business-scoped user id, when Meta sent it
    customer_name: str = ""
    wamid: str
    type: str = "unknown"
    timestamp: str = ""  # Meta's, unix seconds as a string
    message: dict[str, Any]  # the message exactly as Meta sent it
    contact: dict[str, Any] | None = None
    delivery_id: str = ""
    received_at: float = 0.0  # when ingress received the delivery (unix seconds)
    # Where replies go: the id the customer's key was made from ("" in rows from before it
    # was kept: their key was that id; `reply_to`).
    address: str = ""

    def reply_to(self) -> str:
        return self.address or address(self.customer)


class IdentityLinked(Event, kw_only=True):
    """An id of a customer (a wa_id or a business-scoped user_id) belongs to the customer
    known by `customer`, for this business. The first id seen is the customer's key; later
    ids seen beside it link to it. Stream `identity-<business_id>.<id>`: first writer wins."""

    business_id: str
    id: str
    customer: str  # the key (a pseudonym)
    kind: str  # wa_id or user_id
    address: str = ""  # the id the key was made from, where replies go ("" in older rows)


class StatusReceived(Event, kw_only=True):
    """A status Meta reported for a message the business sent (sent, delivered, read,
    played, failed, ...). Stream `message-<wamid>`."""

    wamid: str
    status: str  # sent, delivered, read, played, failed, ...
    timestamp: str = ""
    recipient_id: str = ""
    conversation_id: str = ""
    phone_number_id: str = ""
    errors: list[Any] = []
    raw: dict[str, Any] = {}  # the status exactly as Meta sent it
    delivery_id: str = ""


class EchoReceived(Event, kw_only=True):
    """A message the business sent from its WhatsApp phone app (`smb_message_echoes`):
    Meta delivered it already; a person is answering. Stream `message-<wamid>`."""

    conversation_id: str
    business_id: str
    phone_number_id: str
    customer: str  # the customer's key (as a MessageReceived's)
    wa_id: str = ""
    user_id: str = ""
    wamid: str
    type: str
    timestamp: str = ""
    message: dict[str, Any] = {}  # the echo exactly as Meta sent it
    delivery_id: str = ""


class ChangeReceived(Event, kw_only=True):
    """Anything else Meta reported for a business account (template status, account update,
    calls, a value of a shape we do not know). Stream `account-<waba_id>`."""

    waba_id: str
    business_id: str = ""  # the WABA's business, "" when none is known
    field: str  # calls, account_update, message_template_status_update, ...
    value: Any = None  # as Meta sent it
    delivery_id: str = ""


class MarketingPreferenceReceived(Event, kw_only=True):
    """Meta's `user_preferences` webhook: a customer stopped (`stop`) or resumed (`resume`,
    or `signup` through a sign-up link) marketing messages from the business. Recorded
    once per (customer, value, timestamp) in the customer's `identity-<business_id>.
    <customer>` stream (personal: sealed with their key, erased with them); one for a WABA
    no business owns stays in `account-<waba_id>`. The api's contacts and the campaigns
    follow it."""

    waba_id: str
    business_id: str = ""  # "" : no business owns the WABA (recorded, followed by nobody)
    phone_number_id: str = ""
    customer: str  # the customer's key (as for their messages)
    wa_id: str = ""
    user_id: str = ""
    value: str  # stop, resume or signup
    category: str = "marketing_messages"
    detail: str = ""
    timestamp: str = ""  # Meta's, unix seconds
    delivery_id: str = ""

    @property
    def opted_out(self) -> bool | None:
        """True for a stop, False for a resume or sign-up, None for a value not known."""
        return {"stop": True, "resume": False, "signup": False}.get(self.value)


class MalformedDeliveryReceived(Event, kw_only=True):
    """A signed delivery whose body is not a JSON object, kept byte for byte for inspection.
    Stream `quarantine-<delivery_id>`."""

    delivery_id: str
    received_at: float = 0.0
    body_base64: str  # the exact bytes Meta sent
    body_preview: str = ""


class ItemRejected(Event, kw_only=True):
    """One item of a delivery that the event store refused to hold as it is (a value it
    cannot store): kept here byte for byte, so that its neighbours are recorded and nothing
    is lost. Stream `quarantine-<delivery_id>`."""

    delivery_id: str
    index: int  # the item's place in the delivery
    kind: str  # message, echo, status or change
    reason: str
    item_base64: str  # the item as JSON


EVENTS: tuple[type[Event], ...] = (
    MessageReceived,
    IdentityLinked,
    StatusReceived,
    EchoReceived,
    ChangeReceived,
    MarketingPreferenceReceived,
    MalformedDeliveryReceived,
    ItemRejected,
)
