"""What a customer's WhatsApp message means to the conversation. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _obj(value: Any) -> dict[str, Any]:
    """A field Meta sends as an object; anything else (a wrong type) reads as empty, so a
    malformed message is still recorded and answered instead of failing its turn."""
    return value if isinstance(value, dict) else {}


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


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
    inter = _obj(msg.get("interactive"))
    kind = inter.get("type")
    if kind == "button_reply":
        reply = _obj(inter.get("button_reply"))
        return Interpretation(
            "turn", f"[button] {reply.get('title', '')}".strip(), detail={"id": reply.get("id")}
        )
    if kind == "list_reply":
        reply = _obj(inter.get("list_reply"))
        text = f"[list choice] {reply.get('title', '')}"
        if reply.get("description"):
            text += f" ({reply['description']})"
        return Interpretation("turn", text, detail={"id": reply.get("id")})
    if kind == "nfm_reply":
        reply = _obj(inter.get("nfm_reply"))
        return Interpretation(
            "turn",
            f"[form submitted] {reply.get('body', '')}".strip(),
            detail={"response_json": reply.get("response_json")},
        )
    return Interpretation("unsupported", detail={"type": f"interactive.{kind}"})


def _location(msg: dict[str, Any]) -> str:
    loc = _obj(msg.get("location"))
    label = ", ".join(str(loc[k]) for k in ("name", "address") if loc.get(k))
    where = f"{loc.get('latitude')}, {loc.get('longitude')}"
    return f"[location] {label} ({where})" if label else f"[location] ({where})"


def _contacts(msg: dict[str, Any]) -> str:
    names = []
    contacts = msg.get("contacts")
    for contact in contacts if isinstance(contacts, list) else []:
        contact = _obj(contact)
        name = _obj(contact.get("name")).get("formatted_name") or "unnamed"
        phones = contact.get("phones")
        phones = [
            _obj(p).get("phone")
            for p in (phones if isinstance(phones, list) else [])
            if _obj(p).get("phone")
        ]
        names.append(f"{name} {' '.join(phones)}".strip())
    return "[shared contacts] " + "; ".join(names)


def _order(msg: dict[str, Any]) -> str:
    order = _obj(msg.get("order"))
    products = order.get("product_items")
    items = [
        f"{_obj(i).get('quantity')} x {_obj(i).get('product_retailer_id')}"
        for i in (products if isinstance(products, list) else [])
    ]
    text = "[order] " + ", ".join(items)
    return f"{text}. {order['text']}" if order.get("text") else text


_MEDIA = ("image", "video", "document", "sticker", "audio")


def interpret(msg: dict[str, Any]) -> Interpretation:
    kind = msg.get("type")
    if msg.get("errors") and kind in (None, "unsupported"):
        return Interpretation("unsupported", detail={"errors": msg["errors"]})
    if kind == "text":
        return Interpretation("turn", _text_of(_obj(msg.get("text")).get("body", "")))
    if kind == "interactive":
        return _interactive(msg)
    if kind == "button":
        button = _obj(msg.get("button"))
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
        media = _obj(msg.get(kind))
        label = "voice note" if kind == "audio" and media.get("voice") else kind
        text = f"[{label}]"
        for key in ("caption", "filename"):
            if media.get(key):
                text += f" {media[key]}"
        return Interpretation("turn", text, detail={"media_id": media.get("id")})
    if kind == "reaction":
        reaction = _obj(msg.get("reaction"))
        return Interpretation(
            "reaction", str(reaction.get("emoji") or ""), target=str(reaction.get("message_id", ""))
        )
    if kind == "edit":
        edit = _obj(msg.get("edit"))
        inner = interpret(_obj(edit.get("message")))
        return Interpretation("edit", inner.text, target=str(edit.get("original_message_id", "")))
    if kind == "revoke":
        revoke = _obj(msg.get("revoke"))
        return Interpretation("delete", target=str(revoke.get("original_message_id", "")))
    if kind == "system":
        system = _obj(msg.get("system"))
        return Interpretation("system", str(system.get("body", "")), detail=system)
    return Interpretation("unsupported", detail={"type": kind, "errors": msg.get("errors")})


def describe(message_type: str, payload: dict[str, Any]) -> str:
    """What a message the business sends says, for the history the bot sees (the Cloud
    API's own body of that type)."""
    body = payload.get(message_type)
    body = body if isinstance(body, dict) else {}
    if message_type == "text":
        return str(body.get("body", ""))
    if message_type == "template":
        return f"[template {body.get('name', '')}]"
    if message_type == "interactive":
        text = (
            (body.get("body") or {}).get("text", "") if isinstance(body.get("body"), dict) else ""
        )
        return str(text) or "[interactive]"
    if message_type in _MEDIA:
        caption = body.get("caption") or body.get("filename") or ""
        return f"[{message_type}] {caption}".strip()
    if message_type == "reaction":
        return f"[reaction] {body.get('emoji', '')}".strip()
    return f"[{message_type}]"
