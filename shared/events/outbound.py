"""Events written by outbound: each send's outbox, and each sent message's lifecycle."""

from __future__ import annotations

from typing import Any

from shared.eventstore import Event


def outbox_stream(command_id: str) -> str:
    """One send, keyed by its command id: SendStarted, then how it ended."""
    return f"outbox-{command_id}"


class SendStarted(Event, kw_only=True):
    """An attempt to call the Graph API is about to start."""

    attempt: int
    conversation_id: str = ""
    seq: int = -1


class SendSucceeded(Event, kw_only=True):
    """Meta accepted the send and gave it this wamid."""

    wamid: str
    # Whose it is, so that it is sealed with the conversation's key like the rest of the
    # send (empty in events from before: those have a key of their stream's own).
    conversation_id: str = ""


class SendFailed(Event, kw_only=True):
    """Meta refused the send for good (e.g. 131047: the 24 h window is closed)."""

    status: int | None = None
    code: int | None = None  # Meta's error code: 131047 = the 24 h window is closed
    title: str = ""
    conversation_id: str = ""
    seq: int = -1


class SendAttemptFailed(Event, kw_only=True):
    """An attempt failed in a way worth retrying (5xx, timeout, throttling)."""

    attempt: int
    error: str = ""
    conversation_id: str = ""  # sealed with the conversation's key (empty: from before)


class SendInterrupted(Event, kw_only=True):
    """The attempt was cut off by a crash inside the Graph API call: whether Meta got it is
    unknown, so it is sent again (the one duplicate the system allows, and counts)."""

    attempt: int
    conversation_id: str = ""  # sealed with the conversation's key (empty: from before)


class MessageSent(Event, kw_only=True):
    """A message the business sent, accepted by Meta. Stream `message-<wamid>`."""

    wamid: str
    command_id: str
    conversation_id: str
    phone_number_id: str
    seq: int = -1
    payload: dict[str, Any] = {}  # the Graph API message body, minus messaging_product/to
    dry_run: bool = False


class LifecycleChanged(Event, kw_only=True):
    """A sent message moved forward (sent, delivered, read, played) or failed. Statuses
    arrive in any order; this only moves forward. Stream `message-<wamid>`."""

    wamid: str
    status: str
    previous: str = "unknown"  # the status recorded before this one
    errors: list[Any] = []
    conversation_id: str = ""


EVENTS: tuple[type[Event], ...] = (
    SendStarted,
    SendSucceeded,
    SendFailed,
    SendAttemptFailed,
    SendInterrupted,
    MessageSent,
    LifecycleChanged,
)
