"""`python -m ops endpoints ...`: the admin API from the command line.

Talks to the relay at --relay (default: this machine's, at BIND_ADDRESS and
WEBHOOK_RELAY_PORT) with the ADMIN_TOKEN from the environment or ENV_FILE, for every
business or, with --business, one (decision 0008). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.webhook_relay.client import AdminClient, AdminError
from shared.config import Settings

HELP = """\
endpoints list | get ID | create URL [--events T,T] [--description D] [--secret S]
          update ID [--url U] [--events T,T] [--description D] | delete ID
          rotate-secret ID [--secret S] | secret ID | disable ID [--reason R] | enable ID
          deliveries ID [--state S] [--limit N] | dead-letters [ID]
          replay ID --dead | --since TIME [--until TIME] | replay-delivery DELIVERY_ID
          event-types"""


def _events(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def add_parser(sub: Any, settings_loader: Any) -> None:
    """Adds `endpoints` to the project's CLI. `settings_loader()` gives the Settings."""
    parser = sub.add_parser(
        "endpoints",
        help="manage the webhook relay's CRM endpoints",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--relay", help="admin API base URL (default: the local relay)")
    parser.add_argument(
        "--business",
        help="act for this business only: its endpoints, deliveries and replays; what it "
        "creates is its own (default: every business's; creates for the default business)",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list")
    actions.add_parser("event-types")
    for name in ("get", "delete", "secret", "enable"):
        actions.add_parser(name).add_argument("id")
    create = actions.add_parser("create")
    create.add_argument("url")
    create.add_argument("--events", help="comma-separated event types (default: all)")
    create.add_argument("--description", default="")
    create.add_argument("--secret", help="a whsec_ secret of your own (default: generated)")
    update = actions.add_parser("update")
    update.add_argument("id")
    update.add_argument("--url")
    update.add_argument("--events", help="comma-separated event types ('' for all)")
    update.add_argument("--description")
    rotate = actions.add_parser("rotate-secret")
    rotate.add_argument("id")
    rotate.add_argument("--secret")
    disable = actions.add_parser("disable")
    disable.add_argument("id")
    disable.add_argument("--reason", default="")
    deliveries = actions.add_parser("deliveries")
    deliveries.add_argument("id")
    deliveries.add_argument("--state", choices=("pending", "succeeded", "dead", "cancelled"))
    deliveries.add_argument("--limit", type=int, default=50)
    dead = actions.add_parser("dead-letters")
    dead.add_argument("id", nargs="?")
    replay = actions.add_parser("replay")
    replay.add_argument("id")
    what = replay.add_mutually_exclusive_group(required=True)
    what.add_argument("--dead", action="store_true", help="every dead-lettered delivery")
    what.add_argument("--since", help="every event recorded since this RFC 3339 time")
    replay.add_argument("--until")
    one = actions.add_parser("replay-delivery")
    one.add_argument("delivery_id")
    parser.set_defaults(fn=lambda args: run(args, settings_loader()))


def run(args: argparse.Namespace, settings: Settings) -> int:
    base = args.relay or settings.url_of("webhook_relay")
    client = AdminClient(base, settings.admin_token, business=args.business)
    try:
        result = _call(client, args)
    except AdminError as exc:
        print(f"relay answered {exc.status}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot reach the relay at {base}: {exc}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=2))
    return 0


def _call(client: AdminClient, args: argparse.Namespace) -> Any:
    action = args.action
    if action == "list":
        return client.endpoints()
    if action == "event-types":
        return client.request("GET", "/admin/event-types")
    if action == "get":
        return client.endpoint(args.id)
    if action == "create":
        return client.create_endpoint(args.url, _events(args.events), args.description, args.secret)
    if action == "update":
        changes: dict[str, Any] = {}
        if args.url is not None:
            changes["url"] = args.url
        if args.events is not None:
            changes["event_types"] = _events(args.events)
        if args.description is not None:
            changes["description"] = args.description
        return client.update_endpoint(args.id, **changes)
    if action == "delete":
        client.delete_endpoint(args.id)
        return {"deleted": args.id}
    if action == "rotate-secret":
        return client.rotate_secret(args.id, args.secret)
    if action == "secret":
        return {"secret": client.secret(args.id)}
    if action == "disable":
        return client.disable(args.id, args.reason)
    if action == "enable":
        return client.enable(args.id)
    if action == "deliveries":
        return client.deliveries(args.id, args.state, args.limit)
    if action == "dead-letters":
        return client.dead_letters(args.id)
    if action == "replay":
        if args.dead:
            return {"replayed": client.replay_dead(args.id)}
        return {"replayed": client.replay_since(args.id, args.since, args.until)}
    if action == "replay-delivery":
        return client.replay_delivery(args.delivery_id)
    raise AssertionError(action)
