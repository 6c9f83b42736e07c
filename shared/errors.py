"""How a handler says what went wrong, so the consumer runtime knows what to do with it."""

from __future__ import annotations


class RetryLater(Exception):
    """Transient: an upstream is unavailable or throttling. Hold this key's lane and try again
    after `delay` seconds; it does not count as a failed attempt (nothing is dropped)."""

    def __init__(self, reason: str, delay: float = 1.0) -> None:
        super().__init__(reason)
        self.delay = delay


class PermanentError(Exception):
    """Retrying cannot help (bad input, a 4xx that means no): dead-letter at once."""
