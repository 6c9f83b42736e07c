"""Prometheus metrics shared by every service (labels stay bounded: no phones, no wamids)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
outage_wait = Histogram(
    "consumer_outage_wait_seconds",
    "How long one message waited for the broker, database or an upstream to come back",
    ["service"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
waiting_now = Gauge(
    "consumer_messages_waiting_for_outage",
    "Messages held in their lane until an outage ends",
    ["service"],
)
dead_letters = Counter("dead_lettered_messages_total", "Messages dead-lettered", ["service"])
webhooks_received = Counter("webhooks_received_total", "Webhook POSTs by outcome", ["outcome"])
dedup_rejected_items = Counter(
    "dedup_rejected_items_total",
    "Delivery items the event store refused as they were, kept in quarantine",
    ["kind"],
)
unrouted_items = Counter(
    "unrouted_items_total",
    "Delivery items for a number no business owns here (or signed by another app): "
    "recorded, never answered",
    ["reason"],
)
dedup_duplicates = Counter("dedup_duplicates_total", "Items Meta delivered again", ["kind"])
replies_sent = Counter(
    "replies_sent_total", "Replies sent to the Graph API by outcome", ["outcome", "error_code"]
)
uncertain_sends = Counter(
    "outbound_uncertain_sends_total",
    "Sends interrupted by a crash inside the Graph API call (may reach the customer twice)",
)
lifecycle_changes = Counter(
    "message_lifecycle_changes_total", "Outgoing messages moving forward, by new status", ["status"]
)
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

# Broker: depth of each queue, polled by the consumers that own it, and how long a message
# waited between publish and the start of its handling.
queue_messages = Gauge("queue_messages", "Messages ready in a queue", ["queue"])
queue_consumers = Gauge("queue_consumers", "Consumers attached to a queue", ["queue"])
consumer_lag = Histogram(
    "consumer_lag_seconds",
    "Publish to start of handling",
    ["queue"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
# Event store.
eventstore_append_duration = Histogram(
    "eventstore_append_duration_seconds",
    "One append to a stream",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
eventstore_undecodable = Counter(
    "eventstore_undecodable_events_total",
    "Stored events that did not fit their type when read (skipped or given up)",
    ["type"],
)
eventstore_statement_timeouts = Counter(
    "eventstore_statement_timeouts_total",
    "Statements that ran out of time on a live connection (a handler failure, not an outage)",
)
eventstore_coalesced_writes = Histogram(
    "eventstore_coalesced_writes",
    "Appends (append or append_batch calls) of one process sent together in one statement",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
eventstore_conflicts = Counter(
    "eventstore_conflicts_total", "Appends refused: another writer was first"
)
# Circuit breakers: 0 closed, 1 half-open, 2 open.
breaker_state = Gauge("circuit_breaker_state", "0 closed, 1 half-open, 2 open", ["upstream"])
breaker_transitions = Counter(
    "circuit_breaker_transitions_total", "Breaker state changes", ["upstream", "state"]
)
statuses_received = Counter(
    "statuses_received_total", "New delivery statuses from Meta, by kind", ["status"]
)
# Subscriptions to the event store (shared/eventstore/subscription.py), by subscription name:
# a handful of names fixed in code, so the label stays bounded.
subscription_lag = Gauge(
    "subscription_lag_seconds",
    "Age of the oldest event read but not yet handled (0 when caught up)",
    ["subscription"],
)
subscription_events = Counter(
    "subscription_events_processed_total",
    "Events handled and checkpointed",
    ["subscription"],
)
subscription_failures = Counter(
    "subscription_failures_total",
    "Batches that failed (nothing committed) and will be read again",
    ["subscription"],
)
subscription_leader = Gauge(
    "subscription_leader",
    "1 while this process holds the subscription's lock (the active instance)",
    ["subscription"],
)
http_refused = Counter(
    "http_refused_total",
    "Connections and requests the HTTP edge refused or cut off, by reason"
    " (connection_limit, body_timeout, client_gone)",
    ["reason"],
)

erasures_requested = Counter(
    "erasures_requested_total", "Erasures of contacts asked for, by why", ["reason"]
)
contacts_erased = Counter("contacts_erased_total", "Erasures of contacts completed")
media_expired = Counter(
    "media_expired_total", "Customers' files deleted at their business's media retention"
)
