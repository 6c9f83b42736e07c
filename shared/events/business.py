"""Events written by the api: businesses, their numbers and their API keys. Stream
`business-<business_id>`. No secret is ever in these events: access tokens, app secrets and
verify tokens are kept encrypted in the `secrets` table, API keys as hashes."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from shared.eventstore import Event


def business_stream(business_id: str) -> str:
    return f"business-{business_id}"


def request_stream(message_id: str) -> str:
    """A message the business asked the API to send."""
    return f"request-{message_id}"


def contact_stream(business_id: str, contact_id: str) -> str:
    return f"contact-{business_id}.{contact_id}"


def contact_id_for(business_id: str, customer: str) -> str:
    """One contact per (business, customer key): opaque, and the same whoever derives it
    (the api's read models, the conversation's bot) and however often."""
    return "ct_" + hashlib.sha256(f"{business_id}\x1f{customer}".encode()).hexdigest()[:24]


def bot_stream(phone_number_id: str) -> str:
    """A number's bot definitions, one BotPublished per version."""
    return f"bot-{phone_number_id}"


class BusinessCreated(Event, kw_only=True):
    """A business was created on the deployment (by the platform token, or by `make up` for
    the default business)."""

    business_id: str
    name: str
    messaging_limit: int | None = None  # unique customers per moving 24 h; None: unlimited
    default: bool = False  # the business `make up` made from the environment
    daily_send_quota: int | None = None  # messages sent through the API per UTC day; None: no cap
    actor: str = ""  # who did it: platform, a key id, make-up


class BusinessUpdated(Event, kw_only=True):
    """A business's name, messaging limit or daily send quota changed (only what changed is
    set)."""

    business_id: str
    name: str | msgspec.UnsetType = msgspec.UNSET
    messaging_limit: int | msgspec.UnsetType | None = msgspec.UNSET
    daily_send_quota: int | msgspec.UnsetType | None = msgspec.UNSET
    actor: str = ""


class NumberRegistered(Event, kw_only=True):
    """A phone number of the business: routable from this event on. Its access token (and
    app secret and verify token, when it has its own Meta app) are in `secrets`."""

    business_id: str
    phone_number_id: str
    waba_id: str
    display_phone_number: str = ""
    send_rate_per_second: float = 80.0
    persona: str = ""  # "" : the environment's BOT_PERSONA
    llm_model: str = ""  # "" : the environment's OPENAI_MODEL
    voice_id: str = ""  # "" : the environment's ELEVENLABS_VOICE_ID
    own_app: bool = False  # signed with its own app secret, not WHATSAPP_APP_SECRET
    actor: str = ""


class NumberUpdated(Event, kw_only=True):
    """A number's settings changed (only what changed is set; `secrets_changed` names the
    secrets replaced, never their values)."""

    business_id: str
    phone_number_id: str
    waba_id: str | msgspec.UnsetType = msgspec.UNSET
    display_phone_number: str | msgspec.UnsetType = msgspec.UNSET
    send_rate_per_second: float | msgspec.UnsetType = msgspec.UNSET
    persona: str | msgspec.UnsetType = msgspec.UNSET
    llm_model: str | msgspec.UnsetType = msgspec.UNSET
    voice_id: str | msgspec.UnsetType = msgspec.UNSET
    own_app: bool | msgspec.UnsetType = msgspec.UNSET
    secrets_changed: list[str] = []
    actor: str = ""


class ApiKeyIssued(Event, kw_only=True):
    """An API key of the business (`wak_...`): shown once, kept as its SHA-256 hash."""

    business_id: str
    key_id: str
    name: str
    role: str  # admin, agent or viewer
    key_hash: str  # hex SHA-256 of the key: the key itself is never stored
    actor: str = ""


class ApiKeyRevoked(Event, kw_only=True):
    """An API key was revoked: refused (401) from then on."""

    business_id: str
    key_id: str
    actor: str = ""


class MessageRequested(Event, kw_only=True):
    """`POST /v1/messages` accepted a message (202): durable from here on. The api's
    dispatcher hands it to the conversation, which records it (BusinessWrote) and sends it.
    Stream `request-<message_id>`."""

    message_id: str
    business_id: str
    conversation_id: str
    phone_number_id: str
    to: str  # the customer's key
    address: str = ""  # the id it goes to, as the client gave it ("" in older rows: `to`)
    type: str
    payload: dict[str, Any]
    author: str = "business"  # business or agent
    actor: str = ""  # the key id
    idempotency_key: str = ""


class ContactCreated(Event, kw_only=True):
    """A contact made through the API (an audience imported before the customer wrote).
    Stream `contact-<business_id>.<contact_id>`."""

    business_id: str
    contact_id: str
    customer: str  # the key (a pseudonym of the wa_id given)
    wa_id: str = ""  # the wa_id given ("" in older rows: the key was it)
    name: str = ""
    tags: list[str] = []
    attributes: dict[str, Any] = {}
    actor: str = ""


class ContactUpdated(Event, kw_only=True):
    """A contact's tags, attributes or marketing opt-out changed through the API (only what
    changed is set). Stream `contact-<business_id>.<contact_id>`."""

    business_id: str
    contact_id: str
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    attributes: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    marketing_opt_out: bool | msgspec.UnsetType = msgspec.UNSET
    actor: str = ""


class ContactNoteAdded(Event, kw_only=True):
    """A person of the business wrote a note about the contact (personal data: sealed
    with the contact's key, erased with it). Stream `contact-<business_id>.<contact_id>`."""

    business_id: str
    contact_id: str
    note_id: str
    text: str
    actor: str = ""  # who wrote it: a console user's id or an API key's id


class ContactNoteDeleted(Event, kw_only=True):
    """A note was deleted (its text stays only in the sealed ContactNoteAdded, erased with
    the contact). Stream `contact-<business_id>.<contact_id>`."""

    business_id: str
    contact_id: str
    note_id: str
    actor: str = ""


def erasure_stream(erasure_id: str) -> str:
    """One erasure of a contact: what it did, in ids only (the category is not personal)."""
    return f"erasure-{erasure_id}"


class ContactErased(Event, kw_only=True):
    """A contact was erased through the API: their data keys destroyed, their streams
    renamed and emptied, their read-model rows, relay deliveries and media files deleted.
    Ids only, never the number or name. Stream `erasure-<erasure_id>`; CRMs receive
    `contact.erased`."""

    erasure_id: str
    business_id: str
    contact_id: str
    conversations: int = 0  # how many conversations went with it
    actor: str = ""
    reason: str = "request"  # request (through the API) or retention


def access_stream(business_id: str, contact_id: str) -> str:
    """Who read a contact's data: ids only (the category is not personal)."""
    return f"access-{business_id}.{contact_id}"


class ContactDataRead(Event, kw_only=True):
    """Someone read a contact's data through the API (`what`: contact, conversation,
    messages, message, media, notes, export; list: shown in a list or search, at most once an
    hour). At most one per actor, contact and `what` a minute (an hour for `list`).
    Ids and roles only, never the number, name or texts. Stream
    `access-<business_id>.<contact_id>`; listed by `GET /v1/contacts/{id}/accesses`."""

    business_id: str
    contact_id: str
    what: str
    actor: str  # an API key's id, a console user's id, or "platform"
    role: str = ""  # the key's or user's role


class RetentionChanged(Event, kw_only=True):
    """A business's retention: contacts silent for longer than `contacts_inactive_days` are
    erased (None: the deployment's RETENTION_DAYS), files its customers sent are deleted
    `media_days` after the message (None: MEDIA_RETENTION_DAYS). Stream
    `business-<business_id>`."""

    business_id: str
    contacts_inactive_days: int | None = None
    media_days: int | None = None
    actor: str = ""


class HandoffSettingsChanged(Event, kw_only=True):
    """A business's idle hand-back: a conversation a person has goes back to the bot after
    `idle_seconds` in which nobody wrote (None: the deployment's HANDBACK_IDLE_SECONDS; 0:
    never). Stream `business-<business_id>`."""

    business_id: str
    idle_seconds: int | None = None
    actor: str = ""


class BotPublished(Event, kw_only=True):
    """A number's bot definition, as uploaded (YAML or JSON), validated: from now on its
    conversations follow it (one in the middle of a flow finishes it with the version it
    started with). Stream `bot-<phone_number_id>`."""

    business_id: str
    phone_number_id: str
    version: int
    source: str  # the definition exactly as uploaded
    content_type: str = "application/yaml"
    actor: str = ""


def seen_stream(conversation_id: str) -> str:
    """A conversation's reads by the business's people (the unread count's resets)."""
    return f"seen-{conversation_id}"


class ConversationRead(Event, kw_only=True):
    """Someone of the business read the conversation (`POST .../read`, the console opening
    it): its unread count is 0 from here. Stream `seen-<conversation_id>`."""

    business_id: str
    conversation_id: str
    actor: str = ""


class UserCreated(Event, kw_only=True):
    """A console user was added to the business. Never the password (only its hash is kept,
    in the `api_users` table). Stream `business-<business_id>`."""

    business_id: str
    user_id: str
    role: str
    actor: str = ""


class UserChanged(Event, kw_only=True):
    """A console user's name, role or language was changed by an admin (`PATCH /v1/users`);
    `role` is the user's role after the change. Never the name: it stays in `api_users`."""

    business_id: str
    user_id: str
    role: str
    actor: str = ""


class UserDeleted(Event, kw_only=True):
    """A console user was removed: their sessions ended with it."""

    business_id: str
    user_id: str
    actor: str = ""


def template_stream(template_id: str) -> str:
    """A message template, by Meta's id (unique across WABAs)."""
    return f"template-{template_id}"


class TemplateRecorded(Event, kw_only=True):
    """A message template as Meta gave it: read by a sync (`POST /v1/templates/sync`, or a
    send naming a template not known yet) or created through `POST /v1/templates`. Later
    status, quality and category changes come from Meta's webhooks (ChangeReceived in
    `account-<waba_id>`). Stream `template-<template_id>`."""

    business_id: str
    waba_id: str
    template_id: str
    name: str
    language: str
    category: str = ""
    status: str = ""
    parameter_format: str = "POSITIONAL"
    components: list[Any] = []
    quality: str | None = None
    origin: str = "sync"  # sync or created
    actor: str = ""


def campaign_command_stream(campaign_id: str) -> str:
    """What the business asked of a campaign through the api: its definition, its audience
    as evaluated at start, and start / pause / resume / cancel. The campaigns service runs
    it and writes `campaign-<id>`."""
    return f"campaigncmd-{campaign_id}"


class CampaignDefined(Event, kw_only=True):
    """`POST /v1/campaigns`: a draft. `variants` holds each template (name, language,
    category, parameter_format, components as synced) with its weight; the first is the
    campaign's `template`. Stream `campaigncmd-<campaign_id>`."""

    campaign_id: str
    business_id: str
    name: str
    phone_number_id: str
    variants: list[dict[str, Any]]
    audience: dict[str, Any]  # {"tags": [...]} or {"recipients": [{"to", "variables"}]}
    variables: dict[str, Any] = {}
    schedule_at: str | None = None  # RFC 3339
    actor: str = ""


class CampaignAudience(Event, kw_only=True):
    """Part of the audience as `start` evaluated it (once): each recipient's seq, customer
    key, variant and filled components, or its skip reason (duplicate, opted_out,
    no_identity). Stream `campaigncmd-<campaign_id>`, before the CampaignCommanded start."""

    campaign_id: str
    business_id: str
    part: int
    recipients: list[dict[str, Any]]


class CampaignCommanded(Event, kw_only=True):
    """start, pause, resume or cancel, asked through the api. Stream
    `campaigncmd-<campaign_id>`."""

    campaign_id: str
    business_id: str
    action: str  # start, pause, resume, cancel
    total: int = 0  # start: the audience's size
    due_at: str | None = None  # start with schedule_at in the future: when it runs
    actor: str = ""


EVENTS: tuple[type[Event], ...] = (
    BusinessCreated,
    BusinessUpdated,
    NumberRegistered,
    NumberUpdated,
    ApiKeyIssued,
    ApiKeyRevoked,
    MessageRequested,
    ContactCreated,
    ContactUpdated,
    ContactNoteAdded,
    ContactNoteDeleted,
    ContactErased,
    ContactDataRead,
    RetentionChanged,
    HandoffSettingsChanged,
    BotPublished,
    ConversationRead,
    UserCreated,
    UserChanged,
    UserDeleted,
    TemplateRecorded,
    CampaignDefined,
    CampaignAudience,
    CampaignCommanded,
)
