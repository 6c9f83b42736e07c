"""Prometheus metrics shared by every service (labels stay bounded: no phones, no wamids)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

events_processed = Counter(
    "events_processed_total", "Broker messages handled", ["service", "type", "outcome"]
)
handler_duration = Histogram(
    "handler_duration_seconds",
    "Time to handle one broker message",
    ["service", "type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
retries = Counter("retries_total", "Handler retries", ["service", "kind"])
dead_letters = Counter("dead_lettered_messages_total", "Messages dead-lettered", ["service"])
webhooks_received = Counter("webhooks_received_total", "Webhook POSTs by outcome", ["outcome"])
dedup_duplicates = Counter("dedup_duplicates_total", "Items Meta delivered again", ["kind"])
replies_sent = Counter(
    "replies_sent_total", "Replies sent to the Graph API by outcome", ["outcome", "error_code"]
)
uncertain_sends = Counter(
    "outbound_uncertain_sends_total",
    "Sends interrupted by a crash inside the Graph API call (may reach the customer twice)",
)
statuses = Counter("message_statuses_total", "Delivery statuses received", ["status"])
upstream_duration = Histogram(
    "upstream_request_duration_seconds",
    "Calls to the outside world",
    ["upstream", "result"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
reply_latency = Histogram(
    "reply_latency_seconds",
    "Webhook received at ingress to reply accepted by Meta",
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
