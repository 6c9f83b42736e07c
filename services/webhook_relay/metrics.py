"""The relay's Prometheus metrics (endpoint ids as labels: bounded by the registered endpoints)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# The subscription's own lag, events handled and leadership are the shared runner's metrics:
# subscription_lag_seconds, subscription_events_processed_total and subscription_leader,
# with subscription="webhook-relay".
deliveries_enqueued = Counter(
    "webhook_relay_deliveries_enqueued_total", "Deliveries created by the subscription"
)
attempts = Counter(
    "webhook_relay_attempts_total",
    "Delivery attempts by endpoint and outcome (delivered, failed, throttled, gone)",
    ["endpoint", "outcome"],
)
dead_lettered = Counter(
    "webhook_relay_dead_lettered_total", "Deliveries given up after the last attempt", ["endpoint"]
)
attempt_duration = Histogram(
    "webhook_relay_attempt_duration_seconds",
    "Time of one delivery attempt",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
lanes = Gauge("webhook_relay_lanes", "Lanes with a pending delivery", ["endpoint"])
in_flight = Gauge("webhook_relay_in_flight", "Deliveries being attempted", ["endpoint"])
endpoint_paused = Gauge(
    "webhook_relay_endpoint_paused",
    "1 while an endpoint is paused (throttled, breaker open or disabled)",
    ["endpoint"],
)
# Refreshed from the database every few seconds by the active relay (dashboard and alerts).
endpoints = Gauge("webhook_relay_endpoints", "Registered endpoints by state", ["state"])
backlog = Gauge("webhook_relay_backlog", "Deliveries waiting (pending) per endpoint", ["endpoint"])
dead = Gauge("webhook_relay_dead_letters", "Dead deliveries per endpoint", ["endpoint"])
