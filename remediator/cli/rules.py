"""Rules as code: `validate`, `schema`, `test`, `explain`, `replay`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from remediator.cli.options import add_secret_option, assignment, duration
from remediator.errors import RuleError
from remediator.model import Rule
from remediator.settings import Settings


def _add_validate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = commands.add_parser("validate", help="check rule files")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.add_argument(
        "--core",
        action="store_true",
        help="for a daemon run with --core: rules may listen on remediator's own subjects",
    )
    validate.set_defaults(command=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from remediator.errors import RuleErrors
    from remediator.rules.loader import load_rules
    from remediator.rules.secrets import Secrets
    from remediator.rules.templating import Templates

    try:
        rules = load_rules(args.paths, Templates(Secrets(os.environ)))
    except RuleErrors as exc:
        for error in exc.errors:
            print(RuleError.__str__(error))
        print(f"{len(exc.errors)} problem(s)", file=sys.stderr)
        return 1
    except RuleError as exc:
        print(exc)
        return 1
    taken = [] if args.core else _on_own_subjects(rules)
    for line in taken:
        print(line)
    if taken:
        print(f"{len(taken)} problem(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(rules)} rule(s)")
    return 0


def _on_own_subjects(rules: tuple[Rule, ...]) -> list[str]:
    """Rules the daemon refuses in JetStream mode (its default): listening where it
    stores its own results, dead letters and audit records."""
    from remediator.nats.jsconfig import OWN_SUBJECTS
    from remediator.rules.subjects import overlaps

    lines = []
    for rule in rules:
        taken = [s for s in rule.subjects if any(overlaps(s, own) for own in OWN_SUBJECTS)]
        if taken:
            lines.append(
                f"{rule.source}: rule {rule.name}: on: {', '.join(taken)} is where remediator "
                "stores its own results and audit records; the daemon refuses it in JetStream "
                "mode (use a subject of your own, or validate with --core for a --core daemon)"
            )
    return lines


def _add_schema(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schema = commands.add_parser("schema", help="print the JSON Schema of rule files")
    schema.add_argument("--cases", action="store_true", help="of rule test case files instead")
    schema.add_argument(
        "--draft",
        choices=["2020-12", "07"],
        default="2020-12",
        help="JSON Schema draft (07 for editors whose YAML language server stops there)",
    )
    schema.set_defaults(command=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    from remediator.offline.caseschema import CASES_SCHEMA
    from remediator.rules.schema import RULES_SCHEMA, as_draft_07

    document = CASES_SCHEMA if args.cases else RULES_SCHEMA
    print(json.dumps(as_draft_07(document) if args.draft == "07" else document, indent=2))
    return 0


def _add_test(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    test = commands.add_parser("test", help="run rule test cases (dry run, no network)")
    test.add_argument("paths", nargs="+", metavar="PATH", help="rule files or directories")
    test.add_argument(
        "--cases",
        action="extend",
        nargs="+",
        default=[],
        metavar="FILE",
        help="case files (default: *.cases.yaml beside the rules)",
    )
    add_secret_option(test)
    test.set_defaults(command=cmd_test)


def cmd_test(args: argparse.Namespace) -> int:
    from remediator.offline.rulecases import run_cases
    from remediator.offline.sandbox import offline_secrets

    secrets = offline_secrets(dict(args.secret), os.environ)
    report = asyncio.run(run_cases(args.paths, args.cases, secrets))
    print(report.text())
    return 0 if report.passed else 1


def _add_explain(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    explain = commands.add_parser("explain", help="why an event fires, or not, each rule")
    explain.add_argument("path", metavar="PATH", help="rule file or directory")
    explain.add_argument("subject", metavar="SUBJECT")
    explain.add_argument("payload", metavar="JSON", help="the event's payload, or - for stdin")
    explain.add_argument("--header", action="append", default=[], type=assignment, metavar="K=V")
    add_secret_option(explain)
    explain.set_defaults(command=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from remediator import logs
    from remediator.errors import EventError
    from remediator.offline.explain import explain_event
    from remediator.offline.sandbox import offline_secrets

    data = sys.stdin.read() if args.payload == "-" else args.payload
    secrets = offline_secrets(dict(args.secret), os.environ)
    logs.configure("text", "ERROR", secrets)  # a failing `when` is in the output already
    try:
        print(explain_event([args.path], args.subject, dict(args.header), data.encode(), secrets))
    except EventError as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 2
    return 0


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = commands.add_parser("replay", help="dry-run the rules over events stored in a stream")
    add = replay.add_argument
    add("--rules", action="append", help="rule file or directory (repeatable; default rules/)")
    span = replay.add_mutually_exclusive_group(required=True)
    span.add_argument("--since", type=duration, metavar="DURATION", help="events of the last 24h")
    span.add_argument("--from-seq", dest="from_seq", type=int, metavar="N", help="first sequence")
    add("--to-seq", dest="to_seq", type=int, metavar="M", help="last sequence (default: the end)")
    add("--against", action="append", metavar="OLD_RULES", help="rules to compare with")
    add("--stream", help="stream of alerts (default ALERTS)")
    add("--nats", dest="nats_url", metavar="URL[,URL...]", help="env REMEDIATOR_NATS_URL")
    add("--max-actions", dest="max_actions", metavar="N[/WINDOW]", help="a global budget")
    add("--config", metavar="FILE", help="YAML config file (NATS access, budget)")
    add("--json", action="store_true", help="machine-readable output")
    add_secret_option(replay)
    replay.set_defaults(command=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from remediator import logs
    from remediator.nats.history import Span
    from remediator.offline.replay import replay_stream, text
    from remediator.offline.sandbox import offline_rules, offline_secrets

    flags = {"rules": args.rules, "nats_url": args.nats_url, "stream": args.stream}
    flags |= {"max_actions": args.max_actions, "config": args.config}
    settings = Settings.load({k: v for k, v in flags.items() if v is not None}, os.environ)
    secrets = offline_secrets(dict(args.secret), os.environ)
    logs.configure("text", "ERROR", secrets)  # the report is the output, not per-event lines
    rules = offline_rules(settings.rules, secrets)
    against = offline_rules(args.against, secrets) if args.against else None
    since = None if args.since is None else time.time() - args.since
    span = Span(since=since, first=args.from_seq, last=args.to_seq)
    report = asyncio.run(replay_stream(settings, span, rules, against, secrets))
    print(json.dumps(report.to_json(), indent=2) if args.json else text(report))
    return 0


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_validate(commands)
    _add_schema(commands)
    _add_test(commands)
    _add_explain(commands)
    _add_replay(commands)
