"""The command line: argument parsing and exit codes only.

Exit codes: 0 success, 1 a runtime failure (or failed checks in `validate`),
2 rule or configuration errors at start-up. The work itself lives in the
modules each command calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence

from remediator import __version__
from remediator.errors import ConfigError, RemediatorError, RuleError, TransportError
from remediator.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return 2
    try:
        return int(args.command(args))
    except (RuleError, ConfigError) as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 2
    except (TransportError, RemediatorError) as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remediator", description="Auto-remediation rules engine for NATS alerts."
    )
    parser.add_argument("--version", action="version", version=f"remediator {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")
    _add_run(commands)
    _add_validate(commands)
    _add_publish(commands)
    _add_schema(commands)
    _add_test(commands)
    _add_explain(commands)
    _add_replay(commands)
    return parser


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run the daemon")
    run.set_defaults(command=cmd_run)
    add = run.add_argument
    add("--rules", action="append", help="rule file or directory (repeatable; default rules/)")
    add(
        "--nats",
        dest="nats_url",
        metavar="URL",
        help="NATS URL (env REMEDIATOR_NATS_URL); none: start an embedded nats-server",
    )
    add("--core", action="store_const", const=True, help="plain NATS, at-most-once")
    add("--stream", help="JetStream stream of alerts (default ALERTS)")
    add("--durable", help="durable consumer name shared by replicas (default remediator)")
    add("--concurrency", help="events processed at once (default 64)")
    add("--ack-wait", dest="ack_wait", metavar="DURATION", help="default 30s")
    add(
        "--max-ack-pending",
        dest="max_ack_pending",
        metavar="N",
        help="messages delivered and not yet acked across the fleet (default 256)",
    )
    add(
        "--reconnect-attempts",
        dest="reconnect_attempts",
        metavar="N",
        help="NATS reconnect attempts before exiting non-zero (default -1: forever)",
    )
    add("--max-deliver", dest="max_deliver", help="deliveries before dead letter (default 5)")
    add("--http", metavar="HOST:PORT", help="metrics, health, webhook listener (127.0.0.1:9464)")
    add(
        "--dry-run",
        dest="dry_run",
        action="store_const",
        const=True,
        help="render and report, never execute",
    )
    add("--config", metavar="FILE", help="YAML config file")
    add("--data-dir", dest="data_dir", help="embedded server data (default .remediator/)")
    add(
        "--embedded-port",
        dest="embedded_port",
        metavar="PORT",
        help="port of the embedded nats-server on 127.0.0.1 (default 4222)",
    )
    add("--drain-timeout", dest="drain_timeout", metavar="DURATION", help="default 30s")
    add("--log-format", dest="log_format", choices=["json", "text"])
    add("--log-level", dest="log_level")
    add("--creds", help="NATS credentials file")
    add("--nkey-seed", dest="nkey_seed", help="NATS NKey user seed (SU...) or a file holding it")
    add("--user", dest="nats_user", help="NATS user")
    add("--password", dest="nats_password", help="NATS password")
    add("--token", dest="nats_token", help="NATS token")
    add("--tls-ca", dest="tls_ca")
    add("--tls-cert", dest="tls_cert")
    add("--tls-key", dest="tls_key")
    add(
        "--max-actions",
        dest="max_actions",
        metavar="N[/WINDOW]",
        help="global budget: rules fired across the fleet per window (default window 5m)",
    )
    add("--secrets-dir", dest="secrets_dir", help="directory of secret files")
    add("--webhook-subject", dest="webhook_subject", help="subject template for alerts")
    add("--webhook-token", dest="webhook_token", help="bearer token the webhook requires")


def cmd_run(args: argparse.Namespace) -> int:
    from remediator import logs
    from remediator.daemon import Daemon

    settings = Settings.load(_flags(args), os.environ)
    daemon = Daemon(settings, os.environ)
    logs.configure(settings.log_format, settings.log_level, daemon.secrets)
    return asyncio.run(daemon.run())


def _add_validate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = commands.add_parser("validate", help="check rule files")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.set_defaults(command=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from remediator.errors import RuleErrors
    from remediator.rules.loader import load_rules
    from remediator.rules.templating import Secrets, Templates

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
    print(f"ok: {len(rules)} rule(s)")
    return 0


def _add_publish(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    publish = commands.add_parser("publish", help="publish an event")
    publish.add_argument("subject")
    publish.add_argument("payload", nargs="?", default="-", help="JSON, or - for stdin")
    publish.add_argument("--header", action="append", default=[], metavar="K=V")
    publish.add_argument("--nats", dest="nats_url", metavar="URL")
    publish.set_defaults(command=cmd_publish)


def cmd_publish(args: argparse.Namespace) -> int:
    data = sys.stdin.read() if args.payload == "-" else args.payload
    try:
        json.loads(data)
    except ValueError as exc:
        print(f"remediator: payload is not JSON: {exc}", file=sys.stderr)
        return 2
    headers = dict(h.split("=", 1) for h in args.header if "=" in h)
    settings = Settings.load({"nats_url": args.nats_url}, os.environ)
    stored = asyncio.run(_publish(settings, args.subject, data.encode(), headers))
    print(json.dumps({"subject": args.subject, **stored}))
    return 0


async def _publish(
    settings: Settings, subject: str, data: bytes, headers: dict[str, str]
) -> dict[str, object]:
    from remediator.nats.transport import Transport, connect

    transport = Transport(
        await connect(settings, settings.nats_url or "nats://127.0.0.1:4222"), settings
    )
    try:
        return await transport.publish(subject, data, headers)
    finally:
        await transport.close()


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
    from remediator.offline.rulecases import CASES_SCHEMA
    from remediator.rules.schema import RULES_SCHEMA, as_draft_07

    document = CASES_SCHEMA if args.cases else RULES_SCHEMA
    print(json.dumps(as_draft_07(document) if args.draft == "07" else document, indent=2))
    return 0


# --- rules as code: test, explain, replay -----------------------------------------------


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _duration(text: str) -> float:
    from remediator.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_secret_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        type=_assignment,
        metavar="NAME=VALUE",
        help="a value for secret(NAME); else the environment; else a placeholder",
    )


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
    _add_secret_option(test)
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
    explain.add_argument("--header", action="append", default=[], type=_assignment, metavar="K=V")
    _add_secret_option(explain)
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
    span.add_argument("--since", type=_duration, metavar="DURATION", help="events of the last 24h")
    span.add_argument("--from-seq", dest="from_seq", type=int, metavar="N", help="first sequence")
    add("--to-seq", dest="to_seq", type=int, metavar="M", help="last sequence (default: the end)")
    add("--against", action="append", metavar="OLD_RULES", help="rules to compare with")
    add("--stream", help="stream of alerts (default ALERTS)")
    add("--nats", dest="nats_url", metavar="URL", help="NATS URL (env REMEDIATOR_NATS_URL)")
    add("--max-actions", dest="max_actions", metavar="N[/WINDOW]", help="a global budget")
    add("--config", metavar="FILE", help="YAML config file (NATS access, budget)")
    add("--json", action="store_true", help="machine-readable output")
    _add_secret_option(replay)
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


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {k: v for k, v in vars(args).items() if v is not None and k != "command"}
