"""`remediator run`: the daemon's flags, each also a REMEDIATOR_* variable and a config key."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

from remediator.cli.options import checked, flags
from remediator.settings import LOG_FORMATS, LOG_LEVELS, Settings

NO_RULES = (
    "remediator: no rules/ here (the default of --rules): pass --rules PATH, a rule file or "
    "a directory of them"
)


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run the daemon")
    run.set_defaults(command=cmd_run)
    _add_sources(run.add_argument)
    _add_consumer(run.add_argument)
    _add_listener(run.add_argument)
    _add_nats_security(run.add_argument)


Add = Callable[..., object]


def _add_sources(add: Add) -> None:
    """Where rules, NATS and the embedded server come from."""
    add("--rules", action="append", help="rule file or directory (repeatable; default rules/)")
    add(
        "--nats",
        dest="nats_url",
        metavar="URL[,URL...]",
        help="NATS URL, or several comma-separated (env REMEDIATOR_NATS_URL); "
        "none: start an embedded nats-server",
    )
    add("--core", action="store_const", const=True, help="plain NATS, at-most-once")
    add("--config", metavar="FILE", help="YAML config file")
    add("--data-dir", dest="data_dir", help="embedded server data (default .remediator/)")
    add(
        "--embedded-port",
        dest="embedded_port",
        metavar="PORT",
        help="port of the embedded nats-server on 127.0.0.1 (default 4222)",
    )
    add("--secrets-dir", dest="secrets_dir", help="directory of secret files")
    add("--log-format", dest="log_format", choices=LOG_FORMATS)
    add("--log-level", dest="log_level", type=str.lower, choices=LOG_LEVELS)


def _add_consumer(add: Add) -> None:
    """How events are consumed, ordered, acked and limited."""
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
    add("--max-deliver", dest="max_deliver", help="deliveries before dead letter (default 5)")
    add(
        "--replicas",
        metavar="N",
        help="replicas of every stream and bucket remediator creates (default 1; 3 on a cluster)",
    )
    add("--drain-timeout", dest="drain_timeout", metavar="DURATION", help="default 30s")
    add(
        "--dry-run",
        dest="dry_run",
        action="store_const",
        const=True,
        help="render and report, never execute",
    )
    add(
        "--max-actions",
        dest="max_actions",
        metavar="N[/WINDOW]",
        type=checked("max_actions"),
        help="global budget: rules fired across the fleet per window (default window 5m)",
    )


def _add_listener(add: Add) -> None:
    """The HTTP listener: metrics, health, webhook, API, console."""
    add("--http", metavar="HOST:PORT", help="metrics, health, webhook listener (127.0.0.1:9464)")
    add("--webhook-subject", dest="webhook_subject", help="subject template for alerts")
    add("--webhook-token", dest="webhook_token", help="bearer token the webhook requires")
    add(
        "--public-url",
        dest="public_url",
        metavar="URL",
        help="how people reach --http, for links in approval requests (default http://HOST:PORT)",
    )


def _add_nats_security(add: Add) -> None:
    """NATS credentials, TLS and reconnects."""
    add("--creds", help="NATS credentials file")
    add("--nkey-seed", dest="nkey_seed", help="NATS NKey user seed (SU...) or a file holding it")
    add("--user", dest="nats_user", help="NATS user")
    add("--password", dest="nats_password", help="NATS password")
    add("--token", dest="nats_token", help="NATS token")
    add("--tls-ca", dest="tls_ca")
    add("--tls-cert", dest="tls_cert")
    add("--tls-key", dest="tls_key")
    add(
        "--reconnect-attempts",
        dest="reconnect_attempts",
        metavar="N",
        help="NATS reconnect attempts before exiting non-zero (default -1: forever)",
    )
    add(
        "--ping-interval",
        dest="ping_interval",
        metavar="DURATION",
        help="ping the server this often; 2 unanswered: not ready, 3: reconnect (default 5s)",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from remediator import logs
    from remediator.daemon import Daemon

    settings = Settings.load(flags(args), os.environ)
    if settings.rules == Settings().rules and not Path(settings.rules[0]).exists():
        # The first thing a newcomer types, in a directory with no rules/ yet.
        print(NO_RULES, file=sys.stderr)
        return 2
    daemon = Daemon(settings, os.environ)
    logs.configure(settings.log_format, settings.log_level, daemon.secrets)
    with event_loop() as runner:
        return runner.run(daemon.run())


def event_loop() -> asyncio.Runner:
    """uvloop's event loop where it is installed (a dependency on Linux and macOS): the
    daemon's time is spread over many small awaits and socket writes, which uvloop makes
    cheaper (issue 25: 10-15% less CPU per event); asyncio's own loop elsewhere."""
    try:
        import uvloop
    except ImportError:  # Windows, or a build without it: the same daemon, a little slower
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_run(commands)
