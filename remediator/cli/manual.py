"""Runs without an alert and who did what: `trigger` (a manual run) and `audit`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from remediator.cli.options import brake_settings, duration


def _access(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats", dest="nats_url", metavar="URL", help="env REMEDIATOR_NATS_URL")
    parser.add_argument("--config", metavar="FILE", help="YAML config file (NATS access)")


def _add_audit(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="who paused, resumed, approved, denied or ran what")
    audit.add_argument(
        "--since", type=duration, default=7 * 86400.0, metavar="DURATION", help="default 7d"
    )
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    _access(audit)
    audit.set_defaults(command=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from remediator.nats.audit import audit_text, read_all

    records = asyncio.run(read_all(brake_settings(args), time.time() - args.since))
    if args.json:
        for record in records:
            print(json.dumps(record.to_json()))
    else:
        print(audit_text(records) if records else "no audit records")
    return 0


def _add_trigger(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trigger = commands.add_parser("trigger", help="run one rule now, on one daemon")
    add = trigger.add_argument
    add("rule", metavar="RULE")
    event = trigger.add_mutually_exclusive_group()
    event.add_argument("--event", metavar="JSON|@FILE", help="the event (default {})")
    event.add_argument("--from", dest="from_event", metavar="EVENT_ID", help="an earlier event")
    add("--dry-run", action="store_true", help="render and report, run nothing")
    add("--force", action="store_true", help="skip the throttle and budget (never a pause)")
    add("--by", help="who (default: your login name)")
    add("--reason", default="", help="why, for the result and the audit trail")
    add("--wait", type=duration, default=30.0, metavar="DUR", help="for the result (30s)")
    _access(trigger)
    trigger.set_defaults(command=cmd_trigger)


def _event(text: str | None) -> dict[str, object] | None:
    if text is None:
        return None
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as file:
            text = file.read()
    body = json.loads(text)
    if not isinstance(body, dict):
        raise ValueError("the event must be a JSON object")
    return body


def cmd_trigger(args: argparse.Namespace) -> int:
    from remediator.nats import brake
    from remediator.nats.trigger import NoAnswer

    try:
        payload = _event(args.event)
    except (OSError, ValueError) as exc:
        print(f"remediator: --event: {exc}", file=sys.stderr)
        return 2
    given = {"rule": args.rule, "payload": payload, "from_event": args.from_event}
    given |= {"reason": args.reason, "forced": args.force, "dry_run": args.dry_run}
    try:
        done = asyncio.run(brake.trigger(brake_settings(args), args.wait, args.by, **given))
    except NoAnswer as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 1
    if done.state == "failed":
        print(
            f"remediator: manual run {done.id} of {done.rule} failed: {done.error}", file=sys.stderr
        )
        return 1
    print(json.dumps(done.result, indent=2))
    return 0


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_trigger(commands)
    _add_audit(commands)
