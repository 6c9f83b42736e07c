"""The project's command-line tool: `python -m ops <command>`.

prepare  check the broker and database, create and migrate the database, declare the broker
         topology (no services)
up       fill in .env's missing secrets, set up this machine's RabbitMQ and PostgreSQL when
         they are missing and we may, prepare, start every service detached, wait until each
         one is ready
down     stop the services
status   which services run and whether they are ready
demo     post a signed test webhook to ingress and print the bot's reply
dead-letters [--replay]   list the dead-lettered messages (or send them back to their stage)
rebuild-read-models  drop the api's read models and replay them from the event store
migrate-pseudonyms  move customers from before pseudonyms onto them (services stopped:
         docs/privacy.md), then rebuild the read models
reerase  after restoring an older data backup: empty the rows of erased customers (sealed
         under destroyed keys) and rename their streams (docs/privacy.md)
endpoints ...  the webhook relay's CRM endpoints, deliveries and replays (`endpoints -h`)

Every command reads ENV_FILE (default: the checkout's .env), then the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import aio_pika
import asyncpg

from ops.envfile import ensure_env_file, env_file_path, set_values
from ops.preflight import (
    Machine,
    SetupProblem,
    check_broker,
    check_database,
    check_servers,
    database_problem,
    declare_with_plugins,
    ensure_servers,
    quiet_client_logs,
)
from services.api.directory import ensure_default_business
from services.api.projections import rebuild
from services.api.users import CONSOLE_ADMIN, ensure_console_admin
from services.webhook_relay import cli as relay_cli
from shared.broker.cluster import connect_any
from shared.broker.topology import DEAD_LETTERS, declare_all
from shared.config import Settings, load_settings
from shared.crypto.personal import mapper_with_keys
from shared.events.conversation import BotReplied
from shared.eventstore.migrate import ensure_database, migrate
from shared.eventstore.postgres import PostgresEventStore, create_pool, init_connection
from shared.meta.signature import sign
from shared.payloads import text_message
from shared.runtime import install_privacy
from shared.stack import Stack, StackError


def load() -> tuple[Path, Settings]:
    path = env_file_path()
    return path, load_settings(env_file=path)


async def prepare(settings: Settings, machine: Machine, set_up_servers: bool) -> None:
    """Raises SetupProblem for what the operator must fix."""
    if set_up_servers:
        await ensure_servers(settings.amqp_url, settings.database_url, machine, say)
    else:
        await check_servers(settings.amqp_url, settings.database_url)
    try:
        created = await ensure_database(settings.database_url)
        applied = await migrate(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise database_problem(exc, settings.database_url) from None
    print(f"database: {'created, ' if created else ''}migrations applied: {applied or 'none'}")

    async def declare() -> None:
        connection = await connect_any(settings.amqp_url)
        async with connection:
            await declare_all(await connection.channel(), settings)

    await declare_with_plugins(settings.amqp_url, declare, machine, say)
    print("broker topology declared")


def say(line: str) -> None:
    print(line, flush=True)


def _prepared(settings: Settings, set_up_servers: bool) -> bool:
    try:
        asyncio.run(prepare(settings, Machine.this(), set_up_servers))
    except SetupProblem as problem:
        _report(problem)
        return False
    except Exception as exc:  # not a known one: still one line, with what it was
        print(
            f"cannot prepare the broker or database: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return False
    return True


def _report(problem: SetupProblem) -> None:
    for line in problem.lines:
        print(line, file=sys.stderr)


def cmd_up(_: argparse.Namespace) -> int:
    env_path = env_file_path()
    try:
        written = ensure_env_file(env_path)
    except OSError as exc:
        print(f"cannot write {env_path} ({exc.strerror or exc}): check ENV_FILE", file=sys.stderr)
        return 1
    if written:
        print(f"wrote {', '.join(written)} to {env_path}")
    settings = load_settings(env_file=env_path)
    if not _prepared(settings, set_up_servers=True):
        return 1
    try:
        business_id, key = asyncio.run(_default_business(settings))
    except Exception as exc:
        print(f"cannot set up the default business: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if key is not None:
        set_values(env_path, {"API_KEY": key})
        print(f"created the business {business_id!r}; wrote its admin key API_KEY to {env_path}")
        settings = load_settings(env_file=env_path)
    password = settings.console_password
    if password:
        try:
            asyncio.run(_console_admin(settings, business_id, password))
        except Exception as exc:
            print(f"cannot set up the console's user: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    # The services read the same file, whatever directory ENV_FILE was relative to.
    stack = Stack(settings, env={"ENV_FILE": str(env_path)})
    try:
        stack.up()
    except StackError as exc:
        print(f"make up failed: {exc}", file=sys.stderr)
        return 1
    for instance in stack.instances():
        print(
            f"{instance:15} ready  pid {stack.pid(instance)}  "
            f"{settings.url_of(instance)}  log {stack.log_file(instance)}"
        )
    print(f"the API: {settings.url_of('api')}/v1 (docs/api.md), with the key API_KEY in {env_path}")
    if password:
        print(
            f"the console: {settings.url_of('api')}/console/ as {CONSOLE_ADMIN}, password"
            f" {password} (CONSOLE_PASSWORD in {env_path})"
        )
    return 0


async def _console_admin(settings: Settings, business_id: str, password: str) -> None:
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        await ensure_console_admin(pool, business_id, password)
    finally:
        await pool.close()


async def _default_business(settings: Settings) -> tuple[str, str | None]:
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        return await ensure_default_business(pool, settings)
    finally:
        await pool.close()


def cmd_rebuild_read_models(_: argparse.Namespace) -> int:
    async def run() -> dict[str, int]:
        settings = load()[1]
        await check_database(settings.database_url)
        pool = await create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            # Customers' rows may be sealed: read them with the deployment's keys.
            await install_privacy(settings, pool)
            return await rebuild(pool)
        finally:
            await pool.close()

    try:
        counts = asyncio.run(run())
    except SetupProblem as problem:
        _report(problem)
        return 1
    for name, events in counts.items():
        print(f"{name}: rebuilt from {events} events")
    return 0


def cmd_migrate_pseudonyms(_: argparse.Namespace) -> int:
    from ops import pseudonyms
    from shared.crypto import datakeys
    from shared.directory import Directory

    async def run() -> str:
        settings = load()[1]
        await check_database(settings.database_url)
        if not settings.master_key:
            return "no MASTER_KEY: customer keys are their ids, nothing to move"
        pool = await create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                running = await pseudonyms.connected_services(conn)
                erasing = await pseudonyms.pending_erasures(conn)
            if running:
                return f"stop the services first (make down): {', '.join(running)} connected"
            if erasing:
                return f"{erasing} erasure(s) pending: let them finish first (make up)"
            waiting = await _queued_messages(settings)
            if waiting:
                return (
                    f"{waiting} message(s) wait in the stages' queues, under the old ids:"
                    " let them be handled first (make up, then make down when they are empty)"
                )
            await install_privacy(settings, pool)
            ring = datakeys.installed()
            assert ring is not None
            directory = Directory(settings, pool)

            async def business_of(number: str) -> str | None:
                found = await directory.number(number)
                return found.business_id if found else None

            moved = await pseudonyms.migrate(
                pool, ring, business_of, seal=settings.privacy_encryption
            )
            counts = await rebuild(pool)
        finally:
            await pool.close()
        said = [
            f"customers moved: {moved.customers}, rows rewritten: {moved.rows},"
            f" rows renamed: {moved.renamed}; read models rebuilt from"
            f" {sum(counts.values())} events"
        ]
        said += [f"left as they were: {why}" for why in moved.skipped]
        return "\n".join(said)

    try:
        print(asyncio.run(run()))
    except SetupProblem as problem:
        _report(problem)
        return 1
    return 0


async def _queued_messages(settings: Settings) -> int:
    """Messages waiting in the stages' queues and their retry queues (the dead letters are
    not counted: the erasure and `dead-letters` deal with them)."""
    from shared.broker.topology import stages

    await check_broker(settings.amqp_url)
    connection = await connect_any(settings.amqp_url)
    waiting = 0
    async with connection:
        channel = await connection.channel()
        for stage in stages(settings).values():
            for name in [*stage.queues, stage.retry_queue]:
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelClosed:
                    channel = await connection.channel()  # not declared yet: empty
                    continue
                waiting += int(queue.declaration_result.message_count or 0)
    return waiting


def cmd_reerase(_: argparse.Namespace) -> int:
    from services.api.erasure import sweep_tombstones

    async def run() -> dict[str, int]:
        settings = load()[1]
        await check_database(settings.database_url)
        pool = await create_pool(settings.database_url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                return await sweep_tombstones(conn)
        finally:
            await pool.close()

    try:
        counts = asyncio.run(run())
    except SetupProblem as problem:
        _report(problem)
        return 1
    print(f"rows emptied: {counts['events']}, streams renamed: {counts['streams_renamed']}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from ops import backup

    settings = load()[1]
    out = Path(args.out or Path("backups") / time.strftime("%Y%m%d-%H%M%S"))
    try:
        sizes = backup.backup(settings, out)
    except backup.BackupError as problem:
        print(problem, file=sys.stderr)
        return 1
    for name, size in sizes.items():
        print(f"{out / name}: {size} bytes")
    print(f"keep {out / backup.KEYS} apart from the rest (docs/privacy.md)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from ops import backup

    settings = load()[1]
    try:
        keys = Path(args.keys) if args.keys else None
        done = backup.restore(settings, Path(args.source), keys)
    except backup.BackupError as problem:
        print(problem, file=sys.stderr)
        return 1
    for name, count in done.items():
        print(f"{name}: {count}")
    return 0


def cmd_prepare(_: argparse.Namespace) -> int:
    return 0 if _prepared(load()[1], set_up_servers=False) else 1


def cmd_down(_: argparse.Namespace) -> int:
    Stack(load()[1]).down()
    print("stopped")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    settings = load()[1]
    stack = Stack(settings)
    ok = True
    for instance in stack.instances():
        pid = stack.pid(instance)
        ready, reason = stack.ready(instance) if pid else (False, "not running")
        ok &= ready
        state = "ready" if ready else "DOWN "
        print(f"{instance:15} {state}  {settings.url_of(instance)}  {reason}")
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    settings = load()[1]
    customer = args.customer
    payload = text_message(args.text, customer=customer)
    body = json.dumps(payload).encode()
    req = urllib.request.Request(
        f"{settings.url_of('ingress')}/webhook",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(settings.whatsapp_app_secret, body),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            print(f"ingress answered {resp.status}")
    except urllib.error.HTTPError as exc:
        why = exc.read().decode(errors="replace").strip()
        print(f"ingress answered {exc.code}: {why}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"cannot reach ingress at {req.full_url} ({exc}): is `make up` running?",
            file=sys.stderr,
        )
        return 1
    wamid = payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    try:
        reply = asyncio.run(_wait_reply(settings, wamid, wait=args.timeout))
    except SetupProblem as problem:
        _report(problem)
        return 1
    if reply is None:
        print(f"no reply within the timeout; see {Stack(settings).run_dir}/*.log", file=sys.stderr)
        return 1
    print(f"customer: {args.text}\nbot:      {reply}")
    return 0


async def _wait_reply(settings: Settings, wamid: str, wait: float) -> str | None:
    await check_database(settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    try:
        # Through the store: a customer's events are sealed in the table (PRIVACY_ENCRYPTION).
        await init_connection(conn)
        mapper = await mapper_with_keys(conn, settings.master_key) if settings.master_key else None
        store = PostgresEventStore(conn=conn, mapper=mapper)
        seen = 0
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for record in await store.read_after(seen, types=["BotReplied"]):
                seen = record.position.global_position
                event = record.event
                if isinstance(event, BotReplied) and event.in_reply_to == wamid:
                    return event.text
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return None


def cmd_dead_letters(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_dead_letters(load()[1], args.replay))
    except SetupProblem as problem:
        _report(problem)
        return 1


async def _dead_letters(settings: Settings, replay: bool) -> int:
    await check_broker(settings.amqp_url)
    connection = await connect_any(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        stages = await declare_all(channel, settings)
        queue = await channel.get_queue(DEAD_LETTERS)
        seen = 0
        # Listing leaves messages unacked: closing the channel puts them back in order.
        while (message := await queue.get(fail=False, no_ack=False)) is not None:
            headers = dict(message.headers or {})
            stage = str(headers.get("x-stage", "") or _stage_from_x_death(headers))
            print(
                json.dumps(
                    {
                        "type": message.type,
                        "stage": stage,
                        "error": str(headers.get("x-error", "")),
                        "attempts": headers.get("x-attempts"),
                        "message_id": message.message_id,
                    }
                )
            )
            seen += 1
            if replay and stage in stages:
                headers.pop("x-attempt", None)
                await stages[stage].exchange.publish(
                    aio_pika.Message(
                        message.body,
                        headers={**headers, "x-replayed": 1},
                        type=message.type,
                        message_id=uuid.uuid4().hex,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=str(headers.get("x-routing-key") or message.routing_key or ""),
                )
                await message.ack()
        print(f"{seen} dead letter(s){' replayed' if replay else ''}")
    return 0


def _stage_from_x_death(headers: dict[str, object]) -> str:
    """Dead-lettered by the broker's delivery limit (a crash loop): no x-stage header, but
    x-death names the queue, `<stage>.<n>`."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return str(deaths[0].get("queue", "")).split(".")[0]
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare").set_defaults(fn=cmd_prepare)
    sub.add_parser("up").set_defaults(fn=cmd_up)
    sub.add_parser("down").set_defaults(fn=cmd_down)
    sub.add_parser("status").set_defaults(fn=cmd_status)
    demo = sub.add_parser("demo")
    demo.add_argument("--text", default="Hello! What are your opening hours?")
    demo.add_argument("--customer", default="15550001111")
    demo.add_argument("--timeout", type=float, default=30.0)
    demo.set_defaults(fn=cmd_demo)
    dead = sub.add_parser("dead-letters")
    dead.add_argument("--replay", action="store_true")
    dead.set_defaults(fn=cmd_dead_letters)
    sub.add_parser("rebuild-read-models").set_defaults(fn=cmd_rebuild_read_models)
    sub.add_parser("reerase").set_defaults(fn=cmd_reerase)
    sub.add_parser("migrate-pseudonyms").set_defaults(fn=cmd_migrate_pseudonyms)
    made = sub.add_parser("backup")
    made.add_argument("--out", help="the folder (default backups/<time>)")
    made.set_defaults(fn=cmd_backup)
    back = sub.add_parser("restore")
    back.add_argument("source", help="a backup folder")
    back.add_argument("--keys", help="the newest keys.dump (default the folder's own)")
    back.set_defaults(fn=cmd_restore)

    relay_cli.add_parser(sub, lambda: load()[1])
    args = parser.parse_args(argv)
    quiet_client_logs()
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
