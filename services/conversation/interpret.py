"""What a customer's WhatsApp message means to the conversation. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Interpretation:
    kind: str  # "turn" (answer it), "reaction", "edit", "delete", "system", "unsupported"
    text: str = ""
    target: str = ""  # the wamid a reaction, edit or delete refers to
    detail: dict[str, Any] | None = None

    @property
    def answer(self) -> bool:
        return self.kind == "turn"


def _interactive(msg: dict[str, Any]) -> Interpretation:
    inter = msg.get("interactive") or {}
    kind = inter.get("type")
    if kind == "button_reply":
        reply = inter.get("button_reply") or {}
        return Interpretation(
            "turn", f"[button] {reply.get('title', '')}".strip(), detail={"id": reply.get("id")}
        )
    if kind == "list_reply":
        reply = inter.get("list_reply") or {}
        text = f"[list choice] {reply.get('title', '')}"
        if reply.get("description"):
            text += f" ({reply['description']})"
        return Interpretation("turn", text, detail={"id": reply.get("id")})
    if kind == "nfm_reply":
        reply = inter.get("nfm_reply") or {}
        return Interpretation(
            "turn",
            f"[form submitted] {reply.get('body', '')}".strip(),
            detail={"response_json": reply.get("response_json")},
        )
    return Interpretation("unsupported", detail={"type": f"interactive.{kind}"})


def _location(msg: dict[str, Any]) -> str:
    loc = msg.get("location") or {}
    label = ", ".join(str(loc[k]) for k in ("name", "address") if loc.get(k))
    where = f"{loc.get('latitude')}, {loc.get('longitude')}"
    return f"[location] {label} ({where})" if label else f"[location] ({where})"


def _contacts(msg: dict[str, Any]) -> str:
    names = []
    for contact in msg.get("contacts") or []:
        name = (contact.get("name") or {}).get("formatted_name") or "unnamed"
        phones = [p.get("phone") for p in contact.get("phones") or [] if p.get("phone")]
        names.append(f"{name} {' '.join(phones)}".strip())
    return "[shared contacts] " + "; ".join(names)


def _order(msg: dict[str, Any]) -> str:
    order = msg.get("order") or {}
    items = [
        f"{i.get('quantity')} x {i.get('product_retailer_id')}"
        for i in order.get("product_items") or []
    ]
    text = "[order] " + ", ".join(items)
    return f"{text}. {order['text']}" if order.get("text") else text


_MEDIA = ("image", "video", "document", "sticker", "audio")


def interpret(msg: dict[str, Any]) -> Interpretation:
    kind = msg.get("type")
    if msg.get("errors") and kind in (None, "unsupported"):
        return Interpretation("unsupported", detail={"errors": msg["errors"]})
    if kind == "text":
        return Interpretation("turn", str((msg.get("text") or {}).get("body", "")))
    if kind == "interactive":
        return _interactive(msg)
    if kind == "button":
        button = msg.get("button") or {}
        return Interpretation(
            "turn",
            f"[button] {button.get('text', '')}".strip(),
            detail={"payload": button.get("payload")},
        )
    if kind == "location":
        return Interpretation("turn", _location(msg))
    if kind == "contacts":
        return Interpretation("turn", _contacts(msg))
    if kind == "order":
        return Interpretation("turn", _order(msg))
    if kind == "request_welcome":
        return Interpretation("turn", "[opened the chat]")
    if kind in _MEDIA:
        media = msg.get(kind) or {}
        label = "voice note" if kind == "audio" and media.get("voice") else kind
        text = f"[{label}]"
        for key in ("caption", "filename"):
            if media.get(key):
                text += f" {media[key]}"
        return Interpretation("turn", text, detail={"media_id": media.get("id")})
    if kind == "reaction":
        reaction = msg.get("reaction") or {}
        return Interpretation(
            "reaction", str(reaction.get("emoji") or ""), target=str(reaction.get("message_id", ""))
        )
    if kind == "edit":
        edit = msg.get("edit") or {}
        inner = interpret(edit.get("message") or {})
        return Interpretation("edit", inner.text, target=str(edit.get("original_message_id", "")))
    if kind == "revoke":
        revoke = msg.get("revoke") or {}
        return Interpretation("delete", target=str(revoke.get("original_message_id", "")))
    if kind == "system":
        system = msg.get("system") or {}
        return Interpretation("system", str(system.get("body", "")), detail=system)
    return Interpretation("unsupported", detail={"type": kind, "errors": msg.get("errors")})
