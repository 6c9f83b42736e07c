"""The api's typed requests and answers (msgspec Structs). Requests refuse unknown fields and
carry their limits (lengths, ranges, enums) as constraints, so that one declaration both
validates a body and describes it in the OpenAPI document (openapi.py generates it from
these, never by hand). The bodies of the message types are the Cloud API's own, in
messages.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

Name = Annotated[str, Meta(min_length=1, max_length=200)]
MetaId = Annotated[str, Meta(pattern=r"^[0-9]{1,32}$", description="a Meta id: digits")]
Secret = Annotated[str, Meta(min_length=1, max_length=4096)]
Rate = Annotated[float, Meta(gt=0, le=1000)]
Persona = Annotated[str, Meta(max_length=20000)]
Short = Annotated[str, Meta(max_length=200)]
Quota = Annotated[int, Meta(ge=1, le=100_000_000)]
MessagingLimit = Literal[250, 2000, 10000, 100000]
Role = Literal["admin", "agent", "viewer"]
Tag = Annotated[str, Meta(min_length=1, max_length=100)]
Tags = Annotated[list[Tag], Meta(max_length=100)]
Attributes = Annotated[dict[str, Any], Meta(max_length=100)]
Time = Annotated[datetime, Meta(tz=True)]  # RFC 3339, UTC
WaId = Annotated[str, Meta(pattern=r"^[0-9]{5,20}$", description="a phone number, digits")]


class Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: a misspelt field is refused, never ignored."""


class Answer(msgspec.Struct, kw_only=True):
    """Base of answers."""


class Sparse(Answer, omit_defaults=True):
    """An answer whose fields at their default (None) are left out."""


# --- errors ------------------------------------------------------------------------------


class FieldError(Answer, kw_only=True):
    path: str
    message: str


class ErrorBody(Answer, kw_only=True):
    code: str
    message: str
    fields: list[FieldError] | UnsetType = UNSET
    window_closed_at: Time | UnsetType | None = UNSET


class Error(Answer, kw_only=True):
    error: ErrorBody


# --- businesses, numbers, keys -----------------------------------------------------------


class CreateBusiness(Request, kw_only=True):
    name: Name
    messaging_limit: MessagingLimit | None = None
    daily_send_quota: Quota | None = None


class Business(Answer, kw_only=True):
    id: str
    name: str
    messaging_limit: int | None
    daily_send_quota: int | None
    is_default: bool
    created_at: Time


class BusinessList(Answer, kw_only=True):
    data: list[Business]
    next_cursor: str | None


class CreateNumber(Request, kw_only=True):
    phone_number_id: MetaId
    waba_id: MetaId
    display_phone_number: Annotated[str, Meta(max_length=32)] = ""
    access_token: Secret
    app_secret: Secret | None = None
    verify_token: Secret | None = None
    send_rate_per_second: Rate = 80.0
    persona: Persona = ""
    llm_model: Short = ""
    voice_id: Short = ""


class PatchNumber(Request, kw_only=True):
    waba_id: MetaId | UnsetType = UNSET
    display_phone_number: Annotated[str, Meta(max_length=32)] | UnsetType = UNSET
    access_token: Secret | UnsetType = UNSET
    # null: the number goes back to the deployment's own Meta app.
    app_secret: Secret | UnsetType | None = UNSET
    verify_token: Secret | UnsetType | None = UNSET
    send_rate_per_second: Rate | UnsetType = UNSET
    persona: Persona | UnsetType = UNSET
    llm_model: Short | UnsetType = UNSET
    voice_id: Short | UnsetType = UNSET


class Number(Answer, kw_only=True):
    """A number as the api shows it: never its access token, app secret or verify token."""

    phone_number_id: str
    business_id: str
    waba_id: str
    display_phone_number: str
    send_rate_per_second: float
    persona: str
    llm_model: str
    voice_id: str
    own_app: bool
    created_at: Time
    updated_at: Time


class NumberList(Answer, kw_only=True):
    data: list[Number]
    next_cursor: str | None


class CreateApiKey(Request, kw_only=True):
    name: Name
    role: Role


class ApiKey(Sparse, kw_only=True):
    id: str
    name: str
    role: str
    created_at: Time
    revoked_at: Time | None = None


class ApiKeyCreated(Answer, kw_only=True):
    id: str
    name: str
    role: str
    key: str  # shown here only
    created_at: Time


class ApiKeyList(Answer, kw_only=True):
    data: list[ApiKey]
    next_cursor: str | None


# --- messages ----------------------------------------------------------------------------


class MessageAccepted(Answer, kw_only=True):
    id: str
    status: Literal["queued"]
    conversation_id: str


class MessageError(Answer, kw_only=True):
    code: int | None
    title: str


Status = Literal["queued", "sent", "delivered", "read", "failed"]


class MessageView(Sparse, kw_only=True):
    id: str
    conversation_id: str
    direction: Literal["outbound"]
    type: str
    status: Status
    created_at: Time
    updated_at: Time
    wamid: str | None = None
    error: MessageError | None = None


# --- conversations and contacts ----------------------------------------------------------


class ContactRef(Sparse, kw_only=True):
    id: str
    name: str
    wa_id: str | None = None
    user_id: str | None = None


class Conversation(Answer, kw_only=True):
    id: str
    phone_number_id: str
    contact: ContactRef
    last_message_at: Time | None
    last_message_preview: str
    window_open_until: Time | None
    state: Literal["bot", "waiting", "agent", "closed"]
    assignee: str | None
    unread: int


class ConversationList(Answer, kw_only=True):
    data: list[Conversation]
    next_cursor: str | None


class MessageMedia(Sparse, kw_only=True):
    kind: str
    mime_type: str
    url: str
    expired: bool | None = None  # the file was deleted at the business's media retention


class ConversationMessage(Sparse, kw_only=True):
    id: str
    direction: Literal["inbound", "outbound"]
    author: Literal["customer", "bot", "agent", "business"]
    type: str
    text: str
    created_at: Time
    media: MessageMedia | None = None
    status: Status | None = None
    error: MessageError | None = None  # a failed message's reason


class ConversationMessageList(Answer, kw_only=True):
    data: list[ConversationMessage]
    next_cursor: str | None


class Contact(Sparse, kw_only=True):
    id: str
    name: str
    tags: list[str]
    attributes: dict[str, Any]
    marketing_opt_out: bool
    first_seen_at: Time
    last_seen_at: Time
    wa_id: str | None = None
    user_id: str | None = None


class ContactList(Answer, kw_only=True):
    data: list[Contact]
    next_cursor: str | None


class CreateContact(Request, kw_only=True):
    wa_id: WaId
    name: Annotated[str, Meta(max_length=200)] = ""
    tags: Tags = []
    attributes: Attributes = {}


class PatchContact(Request, kw_only=True):
    tags: Tags | UnsetType = UNSET
    attributes: Attributes | UnsetType = UNSET
    marketing_opt_out: bool | UnsetType = UNSET


# --- the bot -------------------------------------------------------------------------------


class BotVersion(Answer, kw_only=True):
    version: int


class BotDefinition(Answer, kw_only=True):
    """The number's published definition (`version` 0 and no definition: none published)."""

    phone_number_id: str
    version: int
    definition: dict[str, Any] | None = None  # the definition as data
    source: str | None = None  # exactly as uploaded
    content_type: str | None = None
    published_at: Time | None = None


SimulatedKind = Literal[
    "text", "image", "video", "document", "sticker", "audio", "voice", "location",
    "contacts", "order", "button", "list", "form", "welcome",
]  # fmt: skip


class SimulatedMessage(Request, kw_only=True):
    """A customer's message: `text` (a caption, a transcript), or `button_id` (a button or
    list reply), or only a `kind` (a sticker, a location); `after`: the time since the
    previous message (a duration such as `31m`, default `1s`)."""

    text: Annotated[str, Meta(max_length=4096)] = ""
    button_id: Annotated[str, Meta(max_length=256)] = ""
    kind: SimulatedKind | None = None
    after: Annotated[str, Meta(max_length=32)] = "1s"


class SimulatedContact(Request, kw_only=True):
    name: Annotated[str, Meta(max_length=200)] = ""
    attributes: Annotated[
        dict[str, Annotated[str, Meta(max_length=1000)]], Meta(max_length=100)
    ] = {}
    tags: Tags = []
    opted_out: bool = False


class SimulateBot(Request, kw_only=True):
    messages: Annotated[list[SimulatedMessage], Meta(min_length=1, max_length=100)]
    contact: SimulatedContact | None = None
    at: Time | None = None  # the first message's time (business hours); default now
    # A definition to try instead of the published one: its YAML or JSON text, or an object.
    definition: Annotated[str, Meta(max_length=200_000)] | dict[str, Any] | None = None
    # The LLM is never called: its answer is this text (default a placeholder), or, with
    # `llm_fails`, it fails, so the fallback text shows.
    llm_answer: Annotated[str, Meta(max_length=4096)] | None = None
    llm_fails: bool = False


class BotSimulation(Answer, kw_only=True):
    version: int  # of the definition simulated (0: one sent in the request, or the default)
    replies: list[list[dict[str, Any]]]  # per message, the Cloud API bodies the bot would send
    state: dict[str, Any]
    contact: dict[str, Any]
    actions: list[list[dict[str, Any]]]
    handled_by: list[str]
    waiting: bool  # handed off: the bot is silent until a person releases it


# --- webhooks to CRMs (the relay's, scoped to the business: webhooks.py) -------------------

Url = Annotated[str, Meta(min_length=1, max_length=2000, description="https://...")]
Description = Annotated[str, Meta(max_length=1000, description="one line of text")]
EventTypeFilter = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=100)]],
    Meta(
        max_length=50,
        description="public event types (GET /v1/webhooks/event-types), prefix wildcards like"
        " `message.*`, or `*`; empty or absent: every type",
    ),
]
DeliveryState = Literal["pending", "succeeded", "dead", "cancelled"]


class CreateWebhookEndpoint(Request, kw_only=True):
    url: Url
    description: Description = ""
    event_types: EventTypeFilter | None = None


class PatchWebhookEndpoint(Request, kw_only=True):
    url: Url | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    event_types: EventTypeFilter | UnsetType = UNSET


class DisableWebhookEndpoint(Request, kw_only=True):
    reason: Annotated[str, Meta(max_length=1000)] = ""


class ReplaySince(Request, kw_only=True):
    since: Time
    until: Time | None = None


class WebhookEndpointStatus(Answer, kw_only=True):
    breaker: str
    paused_until: Time | None = None
    in_flight: int = 0
    lanes: int = 0


class WebhookEndpoint(Sparse, kw_only=True):
    """An endpoint as its business sees it: never its secret (only fingerprints, newest
    first), except in the answers of its creation and of a rotation."""

    id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None = None
    secret_fingerprints: list[str]
    created_at: Time
    updated_at: Time
    status: WebhookEndpointStatus | None = None  # while the relay is sending to it
    deliveries: dict[str, int] | None = None  # by state (GET of one endpoint)


class WebhookEndpointCreated(WebhookEndpoint, kw_only=True):
    secret: str  # whsec_...: shown here and at rotation only


class WebhookSecretRotated(WebhookEndpoint, kw_only=True):
    secret: str
    previous_valid_until: Time | None = None  # the previous secret keeps signing until then


class WebhookEndpointList(Answer, kw_only=True):
    data: list[WebhookEndpoint]
    next_cursor: str | None


class Replayed(Answer, kw_only=True):
    replayed: int


class WebhookDelivery(Sparse, kw_only=True):
    id: str  # the webhook-id header, the same on every attempt and replay
    endpoint_id: str
    event_id: str
    event_type: str
    conversation: str
    state: DeliveryState
    attempts: int
    failures: int
    next_attempt_at: Time | None = None
    first_attempt_at: Time | None = None
    last_attempt_at: Time | None = None
    last_status: int | None = None
    last_error: str | None = None
    replays: int
    created_at: Time
    finished_at: Time | None = None
    event_time: Time
    body: str | None = None  # the exact JSON sent (GET of one delivery)


class WebhookDeliveryList(Answer, kw_only=True):
    data: list[WebhookDelivery]
    next_cursor: str | None


class EventType(Answer, kw_only=True):
    type: str
    description: str


class EventTypeList(Answer, kw_only=True):
    data: list[EventType]
    next_cursor: str | None
    schema_version: int  # of the events' JSON (`schema_version` in each)


# --- privacy -------------------------------------------------------------------------------


class ErasureAccepted(Answer, kw_only=True):
    erasure_id: str
    status: Literal["pending", "done"]


class Erasure(Sparse, kw_only=True):
    erasure_id: str
    contact_id: str
    status: Literal["pending", "done"]
    requested_at: Time
    completed_at: Time | None = None


class CreateNote(Request, kw_only=True):
    text: Annotated[str, Meta(min_length=1, max_length=4000)]


class Note(Answer, kw_only=True):
    id: str
    text: str
    author: str  # a console user's id or an API key's id
    created_at: Time


class NoteList(Answer, kw_only=True):
    data: list[Note]
    next_cursor: str | None


class ExportedConversation(Answer, kw_only=True):
    conversation: Conversation
    messages: list[ConversationMessage]


class ContactExport(Answer, kw_only=True):
    """Everything kept about a customer (the right of access), as one document."""

    contact: Contact
    conversations: list[ExportedConversation]
    notes: list[Note]
    media: list[str]  # the files' names inside the zip (`?media=1`)
    exported_at: Time


Days = Annotated[int, Meta(ge=1, le=36500)]


class PutRetention(Request, kw_only=True):
    contacts_inactive_days: Days | None  # None: the deployment's default
    media_days: Days | None = None  # files customers sent (None: the deployment's default)


IdleSeconds = Annotated[int, Meta(ge=0, le=30 * 24 * 3600)]


class PutHandoffSettings(Request, kw_only=True):
    idle_seconds: IdleSeconds | None  # None: the deployment's default; 0: never


class HandoffSettings(Answer, kw_only=True):
    idle_seconds: int | None  # the business's own (None: the default applies)
    effective_idle_seconds: int | None  # what applies now (None: never goes back by itself)


class ContactAccess(Answer, kw_only=True):
    actor: str  # an API key's id, a console user's id, or "platform"
    role: str
    what: Literal["contact", "conversation", "messages", "message", "media", "export"]
    at: Time


class ContactAccessList(Answer, kw_only=True):
    data: list[ContactAccess]  # newest first


class Retention(Answer, kw_only=True):
    contacts_inactive_days: int | None  # the business's own (None: the default applies)
    effective_days: int | None  # what applies now (None: kept forever)
    media_days: int | None = None  # the business's own for files
    effective_media_days: int | None = None  # what applies to files now (None: kept)
