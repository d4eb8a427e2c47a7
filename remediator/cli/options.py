"""Argument types and option groups shared by several commands."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from remediator.settings import FIELDS, Settings


def assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def duration(text: str) -> float:
    from remediator.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def checked(setting: str) -> Callable[[str], str]:
    """An argparse type that checks a flag as its setting will parse it, so a bad value
    is argparse's one-line usage error (exit 2); the text goes on to `Settings.load`."""
    parse = FIELDS[setting]

    def check(text: str) -> str:
        try:
            parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    check.__name__ = setting  # argparse names the type in some messages
    return check


def add_secret_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        type=assignment,
        metavar="NAME=VALUE",
        help="a value for secret(NAME); else the environment; else a placeholder",
    )


def flags(args: argparse.Namespace) -> dict[str, object]:
    return {k: v for k, v in vars(args).items() if v is not None and k != "command"}


def add_results_access(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats", dest="nats_url", metavar="URL", help="env REMEDIATOR_NATS_URL")
    parser.add_argument("--config", metavar="FILE", help="YAML config file (NATS access)")


def results_settings(args: argparse.Namespace) -> Settings:
    from remediator import logs

    logs.configure("text", "ERROR")  # the answer is the output; reconnect chatter is not
    flags = {"nats_url": args.nats_url, "config": args.config}
    return Settings.load({k: v for k, v in flags.items() if v is not None}, os.environ)


def brake_settings(args: argparse.Namespace) -> Settings:
    from remediator import logs

    logs.configure("text", "ERROR")  # the answer is the output; reconnect chatter is not
    flags = {k: getattr(args, k, None) for k in ("nats_url", "config", "max_actions", "replicas")}
    return Settings.load({k: v for k, v in flags.items() if v is not None}, os.environ)
