"""Composition root of campaigns: `python -m services.campaigns`.

Five parts, each under its own Leadership so that one instance of each is active: the
commands (the api's campaigncmd streams into this service's tables), the outcomes (the
outbox's results per recipient, completion, limit pauses), the account (the messaging
limit Meta reports, templates Meta stopped), the opt-outs (whom not to send marketing
any more) and the runner (the durable scheduler and the
paced dispatch)."""

from __future__ import annotations

from services.campaigns import account, commands, optouts, outcomes
from services.campaigns.runner import NAME as RUNNER
from services.campaigns.runner import Runner
from shared.eventstore.leadership import Leadership
from shared.eventstore.subscription import Subscription
from shared.runtime import Infra, Parts, run_service, session_dsn

POOL = (2, 5)


async def build(infra: Infra) -> Parts:
    settings = infra.settings
    dsn = session_dsn(settings.database_url, "campaigns")
    following = Subscription(
        commands.NAME, commands.project, infra.pool, category=commands.CATEGORY, poll_interval=0.1
    )
    results = Subscription(
        outcomes.NAME, outcomes.project, infra.pool, category=outcomes.CATEGORY, poll_interval=0.1
    )
    learning = Subscription(
        account.NAME, account.project, infra.pool, category=account.CATEGORY, poll_interval=0.2
    )
    opting = Subscription(
        optouts.NAME, optouts.project, infra.pool, poll_interval=0.1, types=optouts.TYPES
    )
    runner = Runner(infra.pool, infra.bus, settings.whatsapp_rate_per_second)
    parts = [
        Leadership(dsn, commands.NAME, following.follow),
        Leadership(dsn, outcomes.NAME, results.follow),
        Leadership(dsn, account.NAME, learning.follow),
        Leadership(dsn, optouts.NAME, opting.follow),
        Leadership(dsn, RUNNER, runner.follow),
    ]

    def task(leadership: Leadership):  # type: ignore[no-untyped-def]
        async def run() -> None:
            await leadership.run()

        return run

    return Parts(tasks=[task(p) for p in parts])


if __name__ == "__main__":
    run_service("campaigns", build, pool_size=POOL)
