"""The body of `POST /v1/messages`: the Cloud API's own message objects, checked as Meta
checks them (text up to 4,096 characters, at most 3 reply buttons with titles up to 20, at
most 10 list rows, media by id or link, ...), so that a message Meta would refuse is a 422
here, naming the field, before anything is recorded. Pure: no I/O.

Templates get their basic shape only; their parameters are checked against the synced
templates by the templates work."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from services.api.errors import invalid
from services.api.schemas import Request

Str = Annotated[str, Meta(min_length=1, max_length=4096)]
Url = Annotated[str, Meta(pattern=r"^https?://", min_length=8, max_length=2000)]
MediaId = Annotated[str, Meta(min_length=1, max_length=200)]
Caption = Annotated[str, Meta(max_length=1024)]

TYPES = (
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "reaction",
    "template",
)
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
# What may be sent outside the customer-service window.
OUTSIDE_WINDOW = ("template",)


class Text(Request, kw_only=True):
    body: Annotated[str, Meta(min_length=1, max_length=4096)]
    preview_url: bool = False


class MediaObject(Request, kw_only=True):
    """audio, sticker: by `id` (uploaded to Meta) or `link` (https)."""

    id: MediaId | None = None
    link: Url | None = None


class CaptionedMedia(MediaObject, kw_only=True):
    """image, video."""

    caption: Caption | None = None


class Document(CaptionedMedia, kw_only=True):
    filename: Annotated[str, Meta(min_length=1, max_length=240)] | None = None


class Location(Request, kw_only=True):
    latitude: Annotated[float, Meta(ge=-90, le=90)]
    longitude: Annotated[float, Meta(ge=-180, le=180)]
    name: Annotated[str, Meta(max_length=1000)] | None = None
    address: Annotated[str, Meta(max_length=1000)] | None = None


class ContactName(Request, kw_only=True):
    formatted_name: Annotated[str, Meta(min_length=1, max_length=1000)]
    first_name: Annotated[str, Meta(max_length=1000)] | None = None
    last_name: Annotated[str, Meta(max_length=1000)] | None = None
    middle_name: Annotated[str, Meta(max_length=1000)] | None = None
    suffix: Annotated[str, Meta(max_length=1000)] | None = None
    prefix: Annotated[str, Meta(max_length=1000)] | None = None


Entries = Annotated[list[dict[str, Any]], Meta(max_length=20)]


class ContactCard(Request, kw_only=True):
    name: ContactName
    phones: Entries | None = None
    emails: Entries | None = None
    addresses: Entries | None = None
    urls: Entries | None = None
    org: dict[str, Any] | None = None
    birthday: Annotated[str, Meta(max_length=10)] | None = None


class Reply(Request, kw_only=True):
    id: Annotated[str, Meta(min_length=1, max_length=256)]
    title: Annotated[str, Meta(min_length=1, max_length=20)]


class ReplyButton(Request, kw_only=True):
    type: Literal["reply"]
    reply: Reply


class Row(Request, kw_only=True):
    id: Annotated[str, Meta(min_length=1, max_length=200)]
    title: Annotated[str, Meta(min_length=1, max_length=24)]
    description: Annotated[str, Meta(max_length=72)] | None = None


class Section(Request, kw_only=True):
    title: Annotated[str, Meta(max_length=24)] | None = None
    rows: Annotated[list[Row], Meta(min_length=1, max_length=10)]


class CtaParameters(Request, kw_only=True):
    display_text: Annotated[str, Meta(min_length=1, max_length=20)]
    url: Url


class Action(Request, kw_only=True):
    buttons: Annotated[list[ReplyButton], Meta(min_length=1, max_length=3)] | None = None
    button: Annotated[str, Meta(min_length=1, max_length=20)] | None = None
    sections: Annotated[list[Section], Meta(min_length=1, max_length=10)] | None = None
    name: Literal["cta_url"] | None = None
    parameters: CtaParameters | None = None


class Header(Request, kw_only=True):
    type: Literal["text", "image", "video", "document"]
    text: Annotated[str, Meta(min_length=1, max_length=60)] | None = None
    image: MediaObject | None = None
    video: MediaObject | None = None
    document: MediaObject | None = None


class InteractiveText(Request, kw_only=True):
    text: Annotated[str, Meta(min_length=1, max_length=1024)]


class FooterText(Request, kw_only=True):
    text: Annotated[str, Meta(min_length=1, max_length=60)]


class Interactive(Request, kw_only=True):
    type: Literal["button", "list", "cta_url"]
    body: InteractiveText
    action: Action
    header: Header | None = None
    footer: FooterText | None = None


class Reaction(Request, kw_only=True):
    message_id: Annotated[str, Meta(min_length=1, max_length=200)]
    emoji: Annotated[str, Meta(max_length=10)]  # "" removes the reaction


class Language(Request, kw_only=True):
    code: Annotated[str, Meta(pattern=r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")]
    policy: Literal["deterministic"] | None = None


class TemplateComponent(Request, kw_only=True):
    type: Literal["header", "body", "button", "footer", "carousel", "limited_time_offer"]
    sub_type: Annotated[str, Meta(max_length=40)] | None = None
    index: int | Annotated[str, Meta(max_length=3)] | None = None
    parameters: Annotated[list[dict[str, Any]], Meta(max_length=100)] | None = None


VariableValue = Annotated[str, Meta(max_length=2000)]


class Template(Request, kw_only=True):
    name: Annotated[str, Meta(pattern=r"^[a-z0-9_]{1,512}$")]
    language: Language
    components: Annotated[list[TemplateComponent], Meta(max_length=20)] | None = None
    # An extension: the parameters by variable, as campaigns take them ("1" or "first_name"
    # for the body, "header.1", "header" for a media header, "button.<index>"; values may
    # name the contact's fields, `{{contact.name}}`): the api fills the components.
    variables: Annotated[dict[Annotated[str, Meta(max_length=64)], VariableValue],
                         Meta(max_length=50)] | None = None  # fmt: skip


class Context(Request, kw_only=True):
    message_id: Annotated[str, Meta(min_length=1, max_length=200)]


class SendMessage(Request, kw_only=True):
    """`{"to", "type", <the object named by type>, "phone_number_id"?, "context"?}`."""

    to: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9.:_-]{1,128}$",
            description="the customer's wa_id or business-scoped user id",
        ),
    ]
    type: Literal[
        "text",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "reaction",
        "template",
    ]
    phone_number_id: Annotated[str, Meta(pattern=r"^[0-9]{1,32}$")] | None = None
    context: Context | None = None
    # Accepted so that a Cloud API body can be sent as it is; nothing else is possible.
    messaging_product: Literal["whatsapp"] | None = None
    recipient_type: Literal["individual"] | None = None
    text: Text | None = None
    image: CaptionedMedia | None = None
    audio: MediaObject | None = None
    video: CaptionedMedia | None = None
    document: Document | None = None
    sticker: MediaObject | None = None
    location: Location | None = None
    contacts: Annotated[list[ContactCard], Meta(min_length=1, max_length=20)] | None = None
    interactive: Interactive | None = None
    reaction: Reaction | None = None
    template: Template | None = None


def check(message: SendMessage) -> None:
    """The rules a Struct cannot say: the object of the type (and only it) is there, media
    by id or link, and the shape of each kind of interactive message."""
    for kind in TYPES:
        present = getattr(message, kind) is not None
        if kind == message.type and not present:
            raise invalid(kind, f"a {kind} message needs its `{kind}` object")
        if kind != message.type and present:
            raise invalid(kind, f"`{kind}` does not belong in a {message.type} message")
    body = getattr(message, message.type)
    if message.type in MEDIA_TYPES:
        _by_id_or_link(body, message.type)
    if message.type == "interactive":
        _interactive(body)
    if message.type == "reaction" and message.context is not None:
        raise invalid("context", "a reaction names its message in reaction.message_id")


def _by_id_or_link(media: MediaObject, path: str) -> None:
    if (media.id is None) == (media.link is None):
        raise invalid(path, "exactly one of `id` (uploaded media) or `link` (https)")


def _interactive(body: Interactive) -> None:
    action = body.action
    wanted = {
        "button": ("buttons",),
        "list": ("button", "sections"),
        "cta_url": ("name", "parameters"),
    }[body.type]
    for name in ("buttons", "button", "sections", "name", "parameters"):
        given = getattr(action, name) is not None
        if name in wanted and not given:
            raise invalid(f"interactive.action.{name}", f"required for a {body.type} message")
        if name not in wanted and given:
            raise invalid(f"interactive.action.{name}", f"not part of a {body.type} message")
    if body.type == "button":
        ids = [b.reply.id for b in action.buttons or []]
        if len(set(ids)) != len(ids):
            raise invalid("interactive.action.buttons", "button ids must differ")
    if body.type == "list":
        rows = [r for s in action.sections or [] for r in s.rows]
        if len(rows) > 10:
            raise invalid("interactive.action.sections", "at most 10 rows in all sections")
        if len({r.id for r in rows}) != len(rows):
            raise invalid("interactive.action.sections", "row ids must differ")
        if len(action.sections or []) > 1 and any(not s.title for s in action.sections or []):
            raise invalid("interactive.action.sections", "each of several sections needs a title")
    header = body.header
    if header is not None:
        if getattr(header, header.type) is None:
            raise invalid(f"interactive.header.{header.type}", "required by the header's type")
        if header.type != "text" and header.type in ("image", "video", "document"):
            _by_id_or_link(getattr(header, header.type), f"interactive.header.{header.type}")
        if body.type == "list" and header.type != "text":
            raise invalid("interactive.header.type", "a list message's header is text only")


def graph_payload(message: SendMessage) -> dict[str, Any]:
    """The Graph API body minus messaging_product and the recipient, as outbound sends it."""
    out: dict[str, Any] = {
        "type": message.type,
        message.type: msgspec.to_builtins(getattr(message, message.type)),
    }
    out[message.type] = _drop_none(out[message.type])
    if message.context is not None:
        out["context"] = {"message_id": message.context.message_id}
    return out


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def summary(message: SendMessage) -> str:
    """What the message says, for the history and the conversation's preview."""
    body = getattr(message, message.type)
    match message.type:
        case "text":
            return str(body.body)
        case "image" | "video" | "document":
            return str(body.caption or f"[{message.type}]")
        case "interactive":
            return str(body.body.text)
        case "location":
            return str(body.name or body.address or f"[location {body.latitude},{body.longitude}]")
        case "reaction":
            return str(body.emoji)
        case "template":
            return f"[template {body.name}]"
        case "contacts":
            return ", ".join(c.name.formatted_name for c in body)
    return f"[{message.type}]"
