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
    add("--max-deliver", dest="max_deliver", help="deliveries before dead letter (default 5)")
    add("--http", metavar="HOST:PORT", help="metrics and health listener (127.0.0.1:9464)")
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
    add("--nkey-seed", dest="nkey_seed", help="NATS NKey seed")
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
    from remediator.loader import load_rules
    from remediator.templating import Secrets, Templates

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
    from remediator.transport import Transport, connect

    transport = Transport(
        await connect(settings, settings.nats_url or "nats://127.0.0.1:4222"), settings
    )
    try:
        return await transport.publish(subject, data, headers)
    finally:
        await transport.close()


def _add_schema(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schema = commands.add_parser("schema", help="print the JSON Schema of rule files")
    schema.set_defaults(command=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    from remediator.schema import schema_json

    print(schema_json())
    return 0


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {k: v for k, v in vars(args).items() if v is not None and k != "command"}
