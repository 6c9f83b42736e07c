"""The group commit's bookkeeping (shared/eventstore/coalesce.py), over a fake statement:
who is sent together, who gets which answer, and that nobody waits for ever. The real
statement's behaviour is in tests/integration/test_eventstore_contract.py."""

from __future__ import annotations

import asyncio

import pytest

from shared.eventstore import Appended, StoreUnavailable, WrongExpectedVersion
from shared.eventstore.coalesce import Coalescer


class Statement:
    """A fake append_to_streams: records each call, refuses any call holding a refused
    write, and can be held until released."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[str]] = []
        self.refuse = refuse
        self.gate: asyncio.Event | None = None
        self.called = asyncio.Event()
        self.outage = False

    async def __call__(self, writes: list[str]) -> list[list[Appended]]:
        self.calls.append(list(writes))
        self.called.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.outage:
            raise StoreUnavailable("down", 0.1)
        if self.refuse & set(writes):
            raise WrongExpectedVersion(f"{sorted(self.refuse & set(writes))}")
        return [[Appended(None, i, i, False)] for i, _ in enumerate(writes)]  # type: ignore[arg-type]


async def test_appends_of_one_turn_go_together_and_each_gets_its_own_answer() -> None:
    statement = Statement()
    c: Coalescer[str] = Coalescer(statement)
    results = await asyncio.gather(c.submit(["a"]), c.submit(["b", "c"]), c.submit(["d"]))
    assert statement.calls == [["a", "b", "c", "d"]]
    assert [[[x.stream_version for x in w] for w in r] for r in results] == [
        [[0]],
        [[1], [2]],
        [[3]],
    ]
    await c.submit(["e"])  # alone: sent alone, at once
    assert statement.calls[-1] == ["e"]


async def test_a_refused_statement_is_sent_again_caller_by_caller() -> None:
    statement = Statement(refuse=frozenset({"b"}))
    c: Coalescer[str] = Coalescer(statement)
    outcomes = await asyncio.gather(
        c.submit(["a"]), c.submit(["b"]), c.submit(["c"]), return_exceptions=True
    )
    assert isinstance(outcomes[1], WrongExpectedVersion)
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert statement.calls[0] == ["a", "b", "c"]
    assert sorted(map(tuple, statement.calls[1:])) == [("a",), ("b",), ("c",)]


async def test_an_outage_is_everyones_and_nothing_is_sent_again() -> None:
    statement = Statement()
    statement.outage = True
    c: Coalescer[str] = Coalescer(statement)
    outcomes = await asyncio.gather(c.submit(["a"]), c.submit(["b"]), return_exceptions=True)
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert statement.calls == [["a", "b"]]


async def test_a_cancelled_send_cancels_its_callers_and_sends_nothing_again() -> None:
    statement = Statement()
    statement.gate = asyncio.Event()
    c: Coalescer[str] = Coalescer(statement)
    callers = [asyncio.ensure_future(c.submit([w])) for w in ("a", "b")]
    await statement.called.wait()
    [sending] = c._sending
    sending.cancel()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
    assert statement.calls == [["a", "b"]]  # not sent again one by one


async def test_a_caller_that_gave_up_is_not_sent_again_alone() -> None:
    statement = Statement(refuse=frozenset({"b"}))
    statement.gate = asyncio.Event()
    c: Coalescer[str] = Coalescer(statement)
    gone = asyncio.ensure_future(c.submit(["a"]))
    staying = asyncio.ensure_future(c.submit(["b"]))
    await statement.called.wait()
    gone.cancel()
    statement.gate.set()
    with pytest.raises(WrongExpectedVersion):
        await staying
    assert statement.calls == [["a", "b"], ["b"]]


def test_a_store_used_from_a_new_loop_is_not_held_by_what_a_closed_one_left() -> None:
    statement = Statement()
    c: Coalescer[str] = Coalescer(statement)
    old = asyncio.new_event_loop()
    left = old.create_task(c.submit(["a"]))
    # The old loop runs the submit, which schedules the send for its next turn, and
    # closes before that turn comes.
    old.call_soon(old.stop)
    old.run_forever()
    assert not left.done() and c._scheduled
    old.close()
    left._log_destroy_pending = False  # it dies with its loop, as the scenario has it

    async def later() -> list[list[Appended]]:
        return await asyncio.wait_for(c.submit(["b"]), 5)

    [[appended]] = asyncio.run(later())
    assert statement.calls == [["b"]] and appended.stream_version == 0
