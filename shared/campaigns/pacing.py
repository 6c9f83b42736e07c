"""How fast a campaign may send: a share of its number's rate (the rest stays for the
conversations' replies), as a token bucket with at most one second of burst, split fairly
between the campaigns running on one number; and the business portfolio's messaging limit
(unique customers reached with templates per moving 24 h), which pauses a campaign until
the window moves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

CAMPAIGN_SHARE = 0.8  # of a number's rate; the rest is kept for replies to customers
WINDOW = timedelta(hours=24)


@dataclass
class Bucket:
    rate: float  # tokens per second
    tokens: float = 0.0
    updated: float | None = None

    def take(self, now: float, want: int) -> int:
        """Up to `want` tokens now (at most one second's worth is ever saved up)."""
        if self.updated is None:
            self.updated, self.tokens = now, min(self.rate, 1.0)
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        granted = min(want, int(self.tokens))
        self.tokens -= granted
        return granted

    def wait(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1.0 - self.tokens) / self.rate) if self.rate > 0 else 1.0


def campaign_rate(number_rate: float, running_on_number: int) -> float:
    """Each campaign's rate: the campaigns' share of the number's rate, split evenly."""
    return number_rate * CAMPAIGN_SHARE / max(1, running_on_number)


@dataclass(frozen=True)
class Reach:
    """The messaging limit's room: `limit` None is unlimited."""

    limit: int | None
    reached: int  # distinct customers reached in the moving window
    oldest: datetime | None  # the first of them: when the window frees a place

    def room(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.reached)

    def frees_at(self) -> datetime | None:
        return self.oldest + WINDOW if self.oldest is not None else None


def allowed(reach: Reach, customers: list[str], already: set[str]) -> tuple[list[str], bool]:
    """Which of `customers` may be sent now (in order), and whether the limit stopped the
    rest. A customer reached within the window costs nothing more."""
    room = reach.room()
    if room is None:
        return customers, False
    out: list[str] = []
    for customer in customers:
        if customer in already:
            out.append(customer)
        elif room > 0:
            room -= 1
            out.append(customer)
        else:
            return out, True
    return out, False
