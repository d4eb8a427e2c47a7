"""The command line: argument parsing and exit codes only.

Exit codes: 0 success, 1 a runtime failure (or failed checks in `validate`),
2 rule or configuration errors at start-up. The work itself lives in the
modules each command calls.
"""

from __future__ import annotations

import argparse
import os
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
        code = int(args.command(args))
        sys.stdout.flush()  # here, so a closed pipe is caught below, not at exit
        return code
    except BrokenPipeError:
        return _reader_gone()
    except (RuleError, ConfigError) as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 2
    except (TransportError, RemediatorError) as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _reader_gone() -> int:
    """`history --json | head`: the reader left. As the Python docs recommend for
    SIGPIPE, point stdout at devnull so the flush at exit raises nothing again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1  # Python's own exit code on EPIPE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remediator", description="Auto-remediation rules engine for NATS alerts."
    )
    parser.add_argument("--version", action="version", version=f"remediator {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")
    for module in (run, rules, operate, manual):
        module.add(commands)
    return parser
