"""Runs without an alert and who did what: `trigger` (a manual run) and `audit`."""

from __future__ import annotations

import argparse
import asyncio
import json
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


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_audit(commands)
