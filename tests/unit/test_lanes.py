"""KeyedLanes: strictly in order within a key, concurrent across keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from shared.broker.bus import KeyedLanes


async def test_jobs_of_one_key_run_in_order_even_when_the_first_is_slower() -> None:
    lanes = KeyedLanes()
    log: list[str] = []

    def job(name: str, delay: float) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            log.append(f"start {name}")
            await asyncio.sleep(delay)
            log.append(f"end {name}")

        return run

    lanes.submit("k", job("1", 0.05))
    lanes.submit("k", job("2", 0.0))
    lanes.submit("k", job("3", 0.01))
    await lanes.drain()
    assert log == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]
    assert len(lanes) == 0


async def test_a_failing_job_does_not_block_its_lane() -> None:
    lanes = KeyedLanes()
    ran: list[str] = []

    async def boom() -> None:
        ran.append("boom")
        raise RuntimeError("handler bug")

    async def after() -> None:
        ran.append("after")

    first = lanes.submit("k", boom)
    second = lanes.submit("k", after)
    await asyncio.wait([first, second], timeout=5)
    assert ran == ["boom", "after"]
    assert isinstance(first.exception(), RuntimeError)


async def test_different_keys_overlap() -> None:
    lanes = KeyedLanes()
    a_started = asyncio.Event()
    b_ran = asyncio.Event()

    async def a() -> None:
        a_started.set()
        # Only finishes if the other key's job runs meanwhile.
        await asyncio.wait_for(b_ran.wait(), timeout=5)

    async def b() -> None:
        await a_started.wait()
        b_ran.set()

    task_a = lanes.submit("a", a)
    task_b = lanes.submit("b", b)
    await asyncio.wait_for(asyncio.gather(task_a, task_b), timeout=10)
    assert b_ran.is_set()


async def test_many_keys_each_keep_their_own_order() -> None:
    lanes = KeyedLanes()
    seen: dict[str, list[int]] = {}

    def job(key: str, i: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            # Earlier jobs sleep longer: any reordering within a key would show.
            await asyncio.sleep(0.002 * (5 - i))
            seen.setdefault(key, []).append(i)

        return run

    for i in range(5):
        for key in ("x", "y", "z"):
            lanes.submit(key, job(key, i))
    await lanes.drain()
    assert seen == {k: [0, 1, 2, 3, 4] for k in ("x", "y", "z")}
