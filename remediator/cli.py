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
    _add_history(commands)
    _add_brake(commands)
    return parser


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run the daemon")
    run.set_defaults(command=cmd_run)
    add = run.add_argument
    add("--rules", action="append", help="rule file or directory (repeatable; default rules/)")
    add(
        "--nats",
        dest="nats_url",
        metavar="URL[,URL...]",
        help="NATS URL, or several comma-separated (env REMEDIATOR_NATS_URL); "
        "none: start an embedded nats-server",
    )
    add("--core", action="store_const", const=True, help="plain NATS, at-most-once")
    add("--stream", help="JetStream stream of alerts (default ALERTS)")
    add("--durable", help="durable consumer name shared by replicas (default remediator)")
    add("--concurrency", help="events processed at once (default 64)")
    add(
        "--order-key",
        dest="order_key",
        metavar="TEMPLATE",
        help="events with the same key run one at a time, in order (default: the "
        "payload's fingerprint, else the subject; none: no ordering)",
    )
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
    add(
        "--replicas",
        metavar="N",
        help="replicas of every stream and bucket remediator creates (default 1; 3 on a cluster)",
    )
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
    add(
        "--public-url",
        dest="public_url",
        metavar="URL",
        help="how people reach --http, for links in approval requests (default http://HOST:PORT)",
    )


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
    publish.add_argument(
        "--nats", dest="nats_url", metavar="URL[,URL...]", help="env REMEDIATOR_NATS_URL"
    )
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
    add("--nats", dest="nats_url", metavar="URL[,URL...]", help="env REMEDIATOR_NATS_URL")
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


# --- what did it do: history, show ------------------------------------------------------


def _add_history(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = commands.add_parser("history", help="what the daemon did: one line per result")
    add = history.add_argument
    add("--rule", help="only this rule's results")
    add("--status", help="only results with this status (succeeded, failed, throttled, ...)")
    add("--since", type=_duration, default=86400.0, metavar="DURATION", help="default 24h")
    add("--limit", type=int, default=50, metavar="N", help="the newest N results (default 50)")
    add("--json", action="store_true", help="one JSON object per line")
    _add_results_access(history)
    history.set_defaults(command=cmd_history)
    show = commands.add_parser("show", help="every result of one event, with its steps")
    show.add_argument("event_id", metavar="EVENT_ID")
    show.add_argument(
        "--since", type=_duration, default=7 * 86400.0, metavar="DURATION", help="default 7d"
    )
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_results_access(show)
    show.set_defaults(command=cmd_show)


def _add_results_access(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats", dest="nats_url", metavar="URL", help="env REMEDIATOR_NATS_URL")
    parser.add_argument("--config", metavar="FILE", help="YAML config file (NATS access)")


def _results_settings(args: argparse.Namespace) -> Settings:
    flags = {"nats_url": args.nats_url, "config": args.config}
    return Settings.load({k: v for k, v in flags.items() if v is not None}, os.environ)


def cmd_history(args: argparse.Namespace) -> int:
    from remediator.offline.history_view import Query, history, table

    if args.limit < 1:
        print("remediator: --limit must be at least 1", file=sys.stderr)
        return 2
    now = time.time()
    query = Query(rule=args.rule, status=args.status, since=now - args.since, limit=args.limit)
    results = asyncio.run(history(_results_settings(args), query))
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
    results = asyncio.run(event_results(_results_settings(args), args.event_id, now - args.since))
    if not results:
        print(f"remediator: no result for event {args.event_id}", file=sys.stderr)
        return 1
    if args.json:
        for body in results:
            print(json.dumps(body, default=str))
    else:
        print(detail(results, now))
    return 0


# --- the brake: pause, resume, status, approvals (remediator.nats.brake does the work) ---


def _add_brake(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def command(name: str, help: str, run: object) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help)
        parser.add_argument(
            "--nats", dest="nats_url", metavar="URL", help="env REMEDIATOR_NATS_URL"
        )
        parser.add_argument("--config", metavar="FILE", help="YAML config file (NATS access)")
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
    pause = commands.choices["pause"]
    pause.add_argument("--for", dest="duration", type=_duration, default=3600.0, metavar="DUR")
    pause.add_argument("--reason", default="", help="why, for whoever looks next")
    pause.add_argument("--by", help="who (default: your login name)")
    status = command("status", "pauses, circuits, budget, approvals, replicas", cmd_status)
    status.add_argument("--json", action="store_true")
    status.add_argument("--max-actions", dest="max_actions", metavar="N[/WINDOW]")
    for name, help in (("approve", "approve a request"), ("deny", "deny a request")):
        decide = command(name, help, cmd_decide)
        decide.add_argument("id", metavar="ID")
        decide.add_argument("--by", help="who (default: your login name)")
        decide.add_argument("--comment", default="")
        decide.set_defaults(decision="approved" if name == "approve" else "denied")
    command("approvals", "list pending approval requests", cmd_approvals).add_argument(
        "--json", action="store_true"
    )


def _brake_settings(args: argparse.Namespace) -> Settings:
    from remediator import logs

    logs.configure("text", "ERROR")  # the answer is the output; reconnect chatter is not
    flags = {k: getattr(args, k, None) for k in ("nats_url", "config", "max_actions")}
    return Settings.load({k: v for k, v in flags.items() if v is not None}, os.environ)


def cmd_pause(args: argparse.Namespace) -> int:
    from remediator.nats import brake

    work = brake.pause(
        _brake_settings(args), args.rules, args.every, args.key, args.duration, args.reason, args.by
    )
    print(asyncio.run(work))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from remediator.nats import brake

    print(asyncio.run(brake.resume(_brake_settings(args), args.rules, args.every, args.key)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from remediator.nats import brake

    print(asyncio.run(brake.status(_brake_settings(args), args.json)))
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from remediator.nats import brake

    settings = _brake_settings(args)
    ok, message = asyncio.run(brake.decide(settings, args.id, args.decision, args.by, args.comment))
    print(message if ok else f"remediator: {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_approvals(args: argparse.Namespace) -> int:
    from remediator.nats import brake

    print(asyncio.run(brake.approvals(_brake_settings(args), args.json)))
    return 0


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {k: v for k, v in vars(args).items() if v is not None and k != "command"}
