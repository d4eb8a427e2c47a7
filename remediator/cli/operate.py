"""Talking to a running system: `publish`, `history`, `show`, and the brake (`pause`,
`resume`, `status`, `approve`, `deny`, `approvals`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from remediator.cli.options import (
    add_results_access,
    brake_settings,
    checked,
    duration,
    results_settings,
)
from remediator.model import RESULT_STATUSES
from remediator.settings import Settings


def _add_publish(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    publish = commands.add_parser("publish", help="publish an event")
    publish.add_argument("subject")
    publish.add_argument("payload", nargs="?", default="-", help="JSON, or - for stdin")
    publish.add_argument("--header", action="append", default=[], metavar="K=V")
    publish.add_argument(
        "--nats", dest="nats_url", metavar="URL[,URL...]", help="env REMEDIATOR_NATS_URL"
    )
    publish.set_defaults(command=cmd_publish)


def cmd_publish(args: argparse.Namespace) -> int:
    from remediator import logs

    data = sys.stdin.read() if args.payload == "-" else args.payload
    try:
        json.loads(data)
    except ValueError as exc:
        print(f"remediator: payload is not JSON: {exc}", file=sys.stderr)
        return 2
    headers = dict(h.split("=", 1) for h in args.header if "=" in h)
    logs.configure("text", "ERROR")  # the answer is the output; reconnect chatter is not
    settings = Settings.load({"nats_url": args.nats_url}, os.environ)
    stored = asyncio.run(_publish(settings, args.subject, data.encode(), headers))
    print(json.dumps({"subject": args.subject, **stored}))
    return 0


async def _publish(
    settings: Settings, subject: str, data: bytes, headers: dict[str, str]
) -> dict[str, object]:
    from remediator.nats.connection import connect
    from remediator.nats.transport import Transport

    transport = Transport(
        await connect(settings, settings.nats_url or "nats://127.0.0.1:4222"), settings
    )
    try:
        return await transport.publish(subject, data, headers)
    finally:
        await transport.close()


def _add_history(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = commands.add_parser("history", help="what the daemon did: one line per result")
    add = history.add_argument
    add("--rule", help="only this rule's results")
    add(
        "--status",
        choices=RESULT_STATUSES,
        metavar="STATUS",
        help=f"only results with this status: {', '.join(RESULT_STATUSES)}",
    )
    add("--since", type=duration, default=86400.0, metavar="DURATION", help="default 24h")
    add("--limit", type=int, default=50, metavar="N", help="the newest N results (default 50)")
    add("--json", action="store_true", help="one JSON object per line")
    add_results_access(history)
    history.set_defaults(command=cmd_history)
    show = commands.add_parser("show", help="every result of one event, with its steps")
    show.add_argument("event_id", metavar="EVENT_ID")
    show.add_argument(
        "--since", type=duration, default=7 * 86400.0, metavar="DURATION", help="default 7d"
    )
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    add_results_access(show)
    show.set_defaults(command=cmd_show)


def cmd_history(args: argparse.Namespace) -> int:
    from remediator.offline.history_view import Query, history, table

    if args.limit < 1:
        print("remediator: --limit must be at least 1", file=sys.stderr)
        return 2
    now = time.time()
    query = Query(rule=args.rule, status=args.status, since=now - args.since, limit=args.limit)
    results = asyncio.run(history(results_settings(args), query))
    if args.json:
        for body in results:
            print(json.dumps(body, default=str))
    elif results:
        print(table(results, now))
    else:
        print("no results", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from remediator.offline.history_view import detail, event_results

    now = time.time()
    results = asyncio.run(event_results(results_settings(args), args.event_id, now - args.since))
    if not results:
        print(f"remediator: no result for event {args.event_id}", file=sys.stderr)
        return 1
    if args.json:
        for body in results:
            print(json.dumps(body, default=str))
    else:
        print(detail(results, now))
    return 0


def _add_brake(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def command(name: str, help: str, run: object) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help)
        parser.add_argument(
            "--nats", dest="nats_url", metavar="URL", help="env REMEDIATOR_NATS_URL"
        )
        parser.add_argument("--config", metavar="FILE", help="YAML config file (NATS access)")
        parser.add_argument(
            "--replicas",
            metavar="N",
            help="replicas of the control bucket if this creates it (as the daemon's)",
        )
        parser.set_defaults(command=run)
        return parser

    for name, help, run in (
        ("pause", "stop rules from acting (all, some, or one throttle key)", cmd_pause),
        ("resume", "lift a pause", cmd_resume),
    ):
        parser = command(name, help, run)
        parser.add_argument("rules", nargs="*", metavar="RULE")
        parser.add_argument("--all", dest="every", action="store_true", help="every rule")
        parser.add_argument("--key", help="only this throttle-key value (e.g. a host)")
    _pause_and_resume_options(commands.choices["pause"], commands.choices["resume"])
    status = command("status", "pauses, circuits, budget, approvals, replicas", cmd_status)
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--max-actions", dest="max_actions", metavar="N[/WINDOW]", type=checked("max_actions")
    )
    for name, help in (("approve", "approve a request"), ("deny", "deny a request")):
        decide = command(name, help, cmd_decide)
        decide.add_argument("id", metavar="ID")
        decide.add_argument("--by", help="who (default: your login name)")
        decide.add_argument("--comment", default="")
        decide.set_defaults(decision="approved" if name == "approve" else "denied")
    command("approvals", "list pending approval requests", cmd_approvals).add_argument(
        "--json", action="store_true"
    )


def _pause_and_resume_options(
    pause: argparse.ArgumentParser, resume: argparse.ArgumentParser
) -> None:
    pause.add_argument(
        "--rules",
        dest="rule_files",
        action="append",
        metavar="PATH",
        help="check the names against these rule files (default: the rules the running "
        "daemons report)",
    )
    pause.add_argument("--for", dest="duration", type=duration, default=3600.0, metavar="DUR")
    pause.add_argument("--reason", default="", help="why, for whoever looks next")
    pause.add_argument("--by", help="who (default: your login name)")
    resume.add_argument("--reason", default="", help="why, for the audit trail")
    resume.add_argument("--by", help="who (default: your login name)")


def cmd_pause(args: argparse.Namespace) -> int:
    from remediator.nats import brake

    known = _rule_names(args.rule_files) if args.rule_files else None
    work = brake.pause(
        brake_settings(args),
        args.rules,
        args.every,
        args.key,
        args.duration,
        args.reason,
        args.by,
        known,
    )
    print(asyncio.run(work))
    return 0


def _rule_names(paths: list[str]) -> list[str]:
    from remediator.rules.loader import load_rules
    from remediator.rules.secrets import Secrets
    from remediator.rules.templating import Templates

    return [rule.name for rule in load_rules(paths, Templates(Secrets(os.environ)))]


def cmd_resume(args: argparse.Namespace) -> int:
    from remediator.nats import brake

    work = brake.resume(
        brake_settings(args), args.rules, args.every, args.key, args.by, args.reason
    )
    lines = asyncio.run(work)
    for resumed, line in lines:
        print(
            line if resumed else f"remediator: {line}", file=sys.stdout if resumed else sys.stderr
        )
    return 0 if all(resumed for resumed, _ in lines) else 1


def cmd_status(args: argparse.Namespace) -> int:
    from remediator.nats import brake

    print(asyncio.run(brake.status(brake_settings(args), args.json)))
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from remediator.nats import brake

    settings = brake_settings(args)
    ok, message = asyncio.run(brake.decide(settings, args.id, args.decision, args.by, args.comment))
    print(message if ok else f"remediator: {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_approvals(args: argparse.Namespace) -> int:
    from remediator.nats import brake

    print(asyncio.run(brake.approvals(brake_settings(args), args.json)))
    return 0


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_publish(commands)
    _add_history(commands)
    _add_brake(commands)
