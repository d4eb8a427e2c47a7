"""The command line: argument parsing and exit codes only.

Exit codes: 0 success, 1 a runtime failure (or failed checks in `validate`),
2 rule or configuration errors at start-up. The work itself lives in the
modules each command calls.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from remediator import __version__
from remediator.cli import manual, operate, rules, run
from remediator.errors import ConfigError, RemediatorError, RuleError, TransportError


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
    for module in (run, rules, operate, manual):
        module.add(commands)
    return parser
