"""The conversation aggregate: its state is the fold of its events. Pure: no I/O.

Every event carries the inbox `seq` it answers, so the state knows which customer message
comes next and can re-emit what it already decided for an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.conversation.interpret import Interpretation
from shared.eventstore import NewEvent, RecordedEvent, event_id_for


@dataclass
class Turn:
    role: str  # "customer" or "bot"
    text: str
    wamid: str = ""
    seq: int = -1
    reactions: list[str] = field(default_factory=list)
    edited: bool = False


@dataclass
class Conversation:
    conversation_id: str
    version: int = -1  # last stream version (optimistic concurrency)
    last_seq: int = -1  # last inbox message handled
    customer_name: str = ""
    turns: list[Turn] = field(default_factory=list)
    replies: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> BotReplied data
    failed: dict[int, str] = field(default_factory=dict)
    # Media (issue 3): the seq whose file the media service is processing (later messages
    # wait in the inbox until its MediaProcessed), the MediaRequested data per seq, and
    # whether replies have gone through the media service (then they all must, for order).
    awaiting_media: int | None = None
    media_requests: dict[int, dict[str, Any]] = field(default_factory=dict)
    replies_via_media: bool = False

    @classmethod
    def from_events(cls, conversation_id: str, events: list[RecordedEvent]) -> Conversation:
        state = cls(conversation_id)
        for event in events:
            state.apply(event.type, event.data)
            state.version = event.version
        return state

    def apply(self, type_: str, data: dict[str, Any]) -> None:
        seq = int(data.get("seq", -1))
        self.last_seq = max(self.last_seq, seq)
        if data.get("customer_name"):
            self.customer_name = data["customer_name"]
        if type_ in ("CustomerWrote", "TurnFailed") and seq == self.awaiting_media:
            self.awaiting_media = None
        if type_ == "CustomerWrote":
            self.turns.append(Turn("customer", data["text"], data["wamid"], seq))
        elif type_ == "BotReplied":
            self.turns.append(Turn("bot", data["text"], "", seq))
            self.replies[seq] = data
            self.replies_via_media |= data.get("delivery") == "media"
        elif type_ == "MediaRequested":
            self.awaiting_media = seq
            self.media_requests[seq] = data
        elif type_ == "CustomerReacted":
            for turn in self._turns_of(data["target"]):
                turn.reactions = [data["emoji"]] if data["emoji"] else []
        elif type_ == "CustomerEdited":
            for turn in self._turns_of(data["target"]):
                turn.text, turn.edited = data["text"], True
        elif type_ == "CustomerDeleted":
            self.turns = [t for t in self.turns if t.wamid != data["target"] or not t.wamid]
        elif type_ == "TurnFailed":
            self.failed[seq] = data.get("error", "")

    def _turns_of(self, wamid: str) -> list[Turn]:
        return [t for t in self.turns if wamid and t.wamid == wamid]

    def recent(self, limit: int) -> list[Turn]:
        return self.turns[-limit:] if limit > 0 else []


def record_inbound(
    state: Conversation, seq: int, received: dict[str, Any], meaning: Interpretation
) -> list[NewEvent]:
    """Events for one customer message, before any reply."""
    base = {
        "seq": seq,
        "wamid": received["wamid"],
        "type": received.get("type"),
        "customer_name": received.get("customer_name", ""),
        "timestamp": received.get("timestamp"),
    }
    key = (state.conversation_id, str(seq))
    if meaning.kind == "turn":
        return [
            NewEvent(
                "CustomerWrote",
                {**base, "text": meaning.text, "detail": meaning.detail or {}},
                id=event_id_for("customer-wrote", *key),
            )
        ]
    if meaning.kind == "reaction":
        return [
            NewEvent(
                "CustomerReacted",
                {**base, "target": meaning.target, "emoji": meaning.text},
                id=event_id_for("customer-reacted", *key),
            )
        ]
    if meaning.kind == "edit":
        return [
            NewEvent(
                "CustomerEdited",
                {**base, "target": meaning.target, "text": meaning.text},
                id=event_id_for("customer-edited", *key),
            )
        ]
    if meaning.kind == "delete":
        return [
            NewEvent(
                "CustomerDeleted",
                {**base, "target": meaning.target},
                id=event_id_for("customer-deleted", *key),
            )
        ]
    if meaning.kind == "system":
        return [
            NewEvent(
                "SystemNotice",
                {**base, "body": meaning.text, "detail": meaning.detail or {}},
                id=event_id_for("system-notice", *key),
            )
        ]
    return [
        NewEvent(
            "UnsupportedReceived",
            {**base, "detail": meaning.detail or {}},
            id=event_id_for("unsupported", *key),
        )
    ]


def bot_replied(
    state: Conversation,
    seq: int,
    text: str,
    in_reply_to: str,
    responder: str,
    *,
    voice: bool = False,
) -> NewEvent:
    command_id = str(event_id_for("reply", state.conversation_id, str(seq)))
    data: dict[str, Any] = {
        "seq": seq,
        "text": text,
        "in_reply_to": in_reply_to,
        "responder": responder,
        "command_id": command_id,
    }
    if voice or state.replies_via_media:
        # Through the media service: spoken, or text queued behind earlier spoken replies
        # (a text sent straight to outbound could overtake them).
        data.update(delivery="media", voice=voice)
    return NewEvent(
        "BotReplied", data, id=event_id_for("bot-replied", state.conversation_id, str(seq))
    )


def turn_failed(state: Conversation, seq: int, error: str) -> NewEvent:
    return NewEvent(
        "TurnFailed",
        {"seq": seq, "error": error},
        id=event_id_for("turn-failed", state.conversation_id, str(seq)),
    )
