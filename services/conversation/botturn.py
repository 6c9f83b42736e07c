"""A customer's turn as the bot sees it (shared/bot's Turn): the words (a text, a caption, a
voice note's transcript, a button's title), the kind of message, the id of the button or
list row chosen, and Meta's timestamp. Pure."""

from __future__ import annotations

from shared.bot import Turn
from shared.events.conversation import CustomerWrote

_KINDS = {
    "text": "text",
    "image": "image",
    "video": "video",
    "document": "document",
    "sticker": "sticker",
    "location": "location",
    "contacts": "contacts",
    "order": "order",
    "button": "button",
    "request_welcome": "welcome",
}
# The prefix interpret.py gives a message that is not typed text ("[button] Yes").
_LABELLED = ("[button] ", "[list choice] ", "[form submitted] ")


def bot_turn(wrote: CustomerWrote) -> Turn:
    kind = _kind(wrote)
    detail = wrote.detail or {}
    text = wrote.text
    for label in _LABELLED:
        if text.startswith(label):
            text = text[len(label) :]
    if kind == "list" and text.endswith(")") and " (" in text:
        text = text.rsplit(" (", 1)[0]  # the row's title, without its description
    if kind in ("sticker", "location", "contacts", "order", "welcome"):
        text = ""  # nothing said in words (bot-v1: such an answer gets a step's retry)
    elif kind in ("image", "video", "document", "audio", "voice") and text.startswith("["):
        # "[image] caption" or "[voice note] (transcription unavailable)": only the words.
        words = text.split("]", 1)[1].strip() if "]" in text else ""
        text = "" if words.startswith("(") else words
    button = detail.get("id") or detail.get("payload") or ""
    try:
        timestamp = float(wrote.timestamp or 0)
    except ValueError:
        timestamp = 0.0
    return Turn(text=text, kind=kind, button_id=str(button), timestamp=timestamp)


def _kind(wrote: CustomerWrote) -> str:
    detail = wrote.detail or {}
    if wrote.type == "audio":
        return "voice" if detail.get("voice") else "audio"
    if wrote.type == "interactive":
        if wrote.text.startswith("[list choice]"):
            return "list"
        if wrote.text.startswith("[form submitted]"):
            return "form"
        return "button"
    return _KINDS.get(str(wrote.type), "text")
