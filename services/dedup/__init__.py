"""Dedup: Meta's at-least-once deliveries in, exactly-once events out."""
