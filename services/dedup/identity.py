"""One customer, one key, whichever id Meta sends.

A customer's key is a keyed pseudonym of the first id Meta gave them to this business (their
wa_id, or their business-scoped user id when they hide their number; shared/crypto/erased.py
`customer_key`). An id seen beside it is linked to the key (`IdentityLinked` in
`identity-<business_id>.<the id's pseudonym>`, expected empty: the first writer wins, a
loser reads the winner's), so later messages carrying only that id reach the same
contact and conversation. Links never change, so they are kept in memory once seen.

A new customer costs one read and one append, once; after that the link is in memory. Two
ids first seen apart (a user id alone, later the wa_id alone) stay two customers: nothing
joins them, and nothing should guess.

A customer whose contact was erased starts again: their identity streams are gone (renamed by
the erasure, their keys destroyed), and the key they get, like their new identity streams,
is a pseudonym with the erasure's epoch in it, so that their new
contact and conversations share nothing with the erased ones. A process that still
remembers the old link learns it is stale when a write under it is refused (ErasedData) and
forgets what it knew (`forget`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.crypto.erased import address, customer_key, keyed
from shared.events.dedup import IdentityLinked, identity_stream
from shared.eventstore import (
    NO_STREAM,
    Erased,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamWrite,
    WrongExpectedVersion,
    event_id_for,
)

# How many times the customer known by these ids was erased in this business.
Epochs = Callable[[str, list[str]], Awaitable[int]]


async def never_erased(business_id: str, ids: list[str]) -> int:
    return 0


@dataclass(frozen=True)
class Customer:
    """Who a message is from: their key (a pseudonym: it names their streams) and the id
    replies go to (the one the key was made from, as before keys were pseudonyms)."""

    key: str
    address: str


def _customer(event: IdentityLinked) -> Customer:
    # A link from before it kept the address: its key was the id (maybe with an epoch).
    return Customer(event.customer, event.address or address(event.customer))


class Identities:
    def __init__(
        self, store: EventStore, capacity: int = 100_000, epochs: Epochs = never_erased
    ) -> None:
        self.store = store
        self.capacity = capacity
        self.epochs = epochs
        self._known: OrderedDict[tuple[str, str], Customer] = OrderedDict()
        self._epochs: OrderedDict[tuple[str, str], int] = OrderedDict()
        # Ids a status named that no link had (a campaign's recipients): every status of
        # theirs would read their identity streams again, twice, otherwise.
        self._unlinked: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def key(self, business_id: str, wa_id: str, user_id: str) -> Customer:
        """The customer of a message carrying these ids (either may be "")."""
        ids = [(i, kind) for i, kind in ((wa_id, "wa_id"), (user_id, "user_id")) if i]
        epoch: int | None = None
        read: dict[str, list[RecordedEvent]] = {}
        unknown = [i for i, _ in ids if (business_id, i) not in self._known]
        if unknown:
            # Something to read from the store: under the epoch of the customer's last
            # erasure, if any (their identity streams before it are gone). Every stream
            # that may hold a link of these ids is read together (a new customer's four
            # would be four round trips one after another).
            epoch = await self.epochs(business_id, [i for i, _ in ids])
            read = await self.store.read_streams(
                [s for i in unknown for s in self._streams_of(business_id, i, epoch)]
            )
        for customer_id, _ in ids:
            found = await self._linked(business_id, customer_id, epoch or 0, read)
            if found:
                await self._link_all(business_id, found, ids, epoch or 0)
                return found
        # First seen: the wa_id, when there is one, makes the key (with the epoch of an
        # earlier erasure). Recorded, so that every instance (and this one after a restart)
        # agrees.
        epoch = epoch or 0
        first = Customer(customer_key(business_id, ids[0][0], epoch), ids[0][0])
        return await self._link_all(business_id, first, ids, epoch)

    async def epoch(self, business_id: str, customer_id: str) -> int:
        """How many times the customer known by this id was erased."""
        if not customer_id:
            return 0
        known = self._epochs.get((business_id, customer_id))
        if known is None:
            known = await self.epochs(business_id, [customer_id])
            self._epochs[(business_id, customer_id)] = known
            if len(self._epochs) > self.capacity:
                self._epochs.popitem(last=False)
        return known

    def forget(self) -> None:
        """Drop every remembered link and epoch (an erasure made one of them stale)."""
        self._known.clear()
        self._epochs.clear()
        self._unlinked.clear()

    async def lookup(self, business_id: str, customer_id: str) -> str:
        """The key of the customer known by this id, without linking anything: a status
        names its recipient by id, who may never have written (a campaign's), and then has
        the key their first message would give them (under their latest epoch)."""
        unlinked = self._unlinked.get((business_id, customer_id))
        if unlinked is not None:
            return unlinked
        epoch = await self.epoch(business_id, customer_id)
        found = await self._linked(business_id, customer_id, epoch) if customer_id else None
        if found is not None:
            return found.key
        key = customer_key(business_id, customer_id, epoch)
        self._unlinked[(business_id, customer_id)] = key
        if len(self._unlinked) > self.capacity:
            self._unlinked.popitem(last=False)
        return key

    @staticmethod
    def _streams_of(business_id: str, customer_id: str, epoch: int) -> list[str]:
        """The streams that may hold the id's link, in the order they are asked. The id's
        stream is named by its pseudonym; a customer linked before keys were pseudonyms has
        it named by the id, and keeps the key it gave them (their conversation and contact
        go on; docs/privacy.md says how to move them)."""
        names = [customer_key(business_id, customer_id, epoch), keyed(customer_id, epoch)]
        return [identity_stream(business_id, name) for name in dict.fromkeys(names)]

    async def _linked(
        self,
        business_id: str,
        customer_id: str,
        epoch: int,
        read: dict[str, list[RecordedEvent]] | None = None,
    ) -> Customer | None:
        """The customer the id is linked to, if any; `read`: streams already read (the
        rest are read now)."""
        known = self._known.get((business_id, customer_id))
        if known is not None:
            self._known.move_to_end((business_id, customer_id))
            return known
        for stream in self._streams_of(business_id, customer_id, epoch):
            recorded_events = (
                read[stream] if read is not None and stream in read
                else await self.store.read_stream(stream)
            )  # fmt: skip
            for recorded in recorded_events:
                if isinstance(recorded.event, Erased):
                    return None
                if isinstance(recorded.event, IdentityLinked):
                    found = _customer(recorded.event)
                    self._remember(business_id, customer_id, found)
                    return found
        return None

    async def _link_all(
        self, business_id: str, customer: Customer, ids: list[tuple[str, str]], epoch: int
    ) -> Customer:
        """Link every id not linked yet to the customer; returns the customer the first id
        has (another process may have linked it first, to its own key)."""
        links = {
            customer_id: StreamWrite(
                identity_stream(business_id, customer_key(business_id, customer_id, epoch)),
                [
                    NewEvent(
                        IdentityLinked(
                            business_id=business_id,
                            id=customer_id,
                            customer=customer.key,
                            kind=kind,
                            address=customer.address,
                        ),
                        event_id_for("identity", business_id, customer_id, customer.key),
                    )
                ],
                NO_STREAM,
            )
            for customer_id, kind in ids
            if (business_id, customer_id) not in self._known
        }
        if len(links) > 1:
            # A number and a user id met together: both links in one commit. If either
            # was linked first by someone else, nothing is written and the links are
            # made one by one below, which finds out whose they are.
            try:
                await self.store.append_batch(list(links.values()))
            except WrongExpectedVersion:
                pass
            else:
                for customer_id in links:
                    self._remember(business_id, customer_id, customer)
                return customer
        for customer_id, link in links.items():
            try:
                await self.store.append(link.stream, link.events, link.expected_version)
                self._remember(business_id, customer_id, customer)
            except WrongExpectedVersion:
                self._known.pop((business_id, customer_id), None)
                winner = await self._linked(business_id, customer_id, epoch)
                if customer_id == ids[0][0] and winner:
                    customer = winner
        return customer

    def _remember(self, business_id: str, customer_id: str, customer: Customer) -> None:
        self._known[(business_id, customer_id)] = customer
        self._unlinked.pop((business_id, customer_id), None)  # linked now
        if len(self._known) > self.capacity:
            self._known.popitem(last=False)
