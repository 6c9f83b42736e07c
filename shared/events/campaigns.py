"""Events written by the campaigns service, which runs campaigns: stream `campaign-<id>`.
What the business asked (the definition, the audience, start / pause / resume / cancel) is
the api's, in `campaigncmd-<id>`; each recipient's sends are the conversation's and
outbound's (under the recipient's message id)."""

from __future__ import annotations

import hashlib

from shared.eventstore import Event


def campaign_stream(campaign_id: str) -> str:
    return f"campaign-{campaign_id}"


def recipient_message_id(campaign_id: str, seq: int, attempt: int = 1) -> str:
    """The message id of a recipient's send (`cmp_...`): the same however often it is
    published, so the conversation records it and outbound sends it once."""
    digest = hashlib.sha256(f"{campaign_id}\x1f{seq}\x1f{attempt}".encode()).hexdigest()[:24]
    return f"cmp_{digest}"


class CampaignRunning(Event, kw_only=True):
    """The campaign sends: `reason` started (at once), scheduled (its schedule_at came) or
    window (a messaging-limit pause ended by itself)."""

    campaign_id: str
    business_id: str
    reason: str


class CampaignPaused(Event, kw_only=True):
    """Paused by a limit, not by the business: `reason` messaging_limit (the portfolio's
    unique customers per moving 24 h; `until` when the window frees a place, RFC 3339)."""

    campaign_id: str
    business_id: str
    reason: str
    until: str | None = None
    code: int | None = None  # Meta's refusal that said so, when it was one


class RecipientRequeued(Event, kw_only=True):
    """A recipient Meta refused for a limit (not for themselves) is sent again later under
    a new message id."""

    campaign_id: str
    business_id: str
    seq: int
    message_id: str


class RecipientSkipped(Event, kw_only=True):
    """A recipient queued at start that the runner did not send, for a MARKETING template:
    `reason` opted_out (the contact opted out of marketing after the start) or
    marketing_limit (Meta refused them for its per-user marketing limit, 131049, in the
    last 24 h, in this business's campaigns)."""

    campaign_id: str
    business_id: str
    seq: int
    reason: str


class CampaignCompleted(Event, kw_only=True):
    """Every recipient is sent, failed or skipped."""

    campaign_id: str
    business_id: str
    sent: int
    failed: int
    skipped: int


EVENTS: tuple[type[Event], ...] = (
    CampaignRunning,
    CampaignPaused,
    RecipientRequeued,
    RecipientSkipped,
    CampaignCompleted,
)
