"""A process that takes a subscription's lock and holds it: `python -m tests.support.lock_holder
DSN NAME`. Prints "active" once it holds it; the tests SIGKILL it to see the lock hand over."""

from __future__ import annotations

import asyncio
import sys

from shared.eventstore.leadership import Leadership


async def main(dsn: str, name: str) -> None:
    async def active() -> None:
        print("active", flush=True)
        await asyncio.Event().wait()

    await Leadership(dsn, name, active, retry_seconds=0.1).run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
