"""NATS subject patterns compared with each other (not with subjects: see `matching`).

Streams and core subscriptions want the smallest set of patterns that still
captures every rule's `on`: `alerts.>` makes `alerts.DiskFull` redundant, and
subscribing to both would deliver one message twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def covers(pattern: str, other: str) -> bool:
    """True when every subject that `other` matches is matched by `pattern`."""
    mine, theirs = pattern.split("."), other.split(".")
    for index, token in enumerate(mine):
        if token == ">":
            return len(theirs) > index
        if index >= len(theirs) or theirs[index] == ">":
            return False
        if token != "*" and (theirs[index] == "*" or token != theirs[index]):
            return False
    return len(mine) == len(theirs)


def overlaps(pattern: str, other: str) -> bool:
    """True when some subject matches both patterns (JetStream refuses two streams that
    could both capture one subject)."""
    mine, theirs = pattern.split("."), other.split(".")
    for left, right in zip(mine, theirs, strict=False):
        if left == ">" or right == ">":
            return True
        if left != right and "*" not in (left, right):
            return False
    return len(mine) == len(theirs)


def minimal_cover(patterns: Iterable[str]) -> list[str]:
    """The patterns none of the others covers, sorted; duplicates dropped."""
    unique = sorted(set(patterns))
    return [p for p in unique if not any(q != p and covers(q, p) for q in unique)]


# nats-server closes a connection whose protocol line passes max_control_line (4 KiB by
# default): `HPUB <subject> <reply> <sizes>` when published, `MSG <subject> <sid>
# <$JS.ACK reply>` when delivered. A subject keeps 1 KiB clear of it for the rest.
MAX_SUBJECT_BYTES = 3 * 1024
# Tokens of printable ASCII other than wildcards, dots and spaces: always publishable.
_TOKEN = r"[!-)+,\-/-=?-~]+"
_PLAIN = re.compile(rf"{_TOKEN}(?:\.{_TOKEN})*")


def publish_problem(subject: str) -> str | None:
    """Why `subject` cannot be published to (None when it can): empty, an empty token, a
    wildcard, whitespace or a control character, not UTF-8, or over MAX_SUBJECT_BYTES."""
    if len(subject) <= MAX_SUBJECT_BYTES and _PLAIN.fullmatch(subject):
        return None  # the common case, settled by one match on every write
    try:
        size = len(subject.encode())
    except UnicodeEncodeError:
        return "not valid UTF-8 text"
    if size > MAX_SUBJECT_BYTES:
        return f"{size} bytes long, over the limit of {MAX_SUBJECT_BYTES}"
    if not subject:
        return "empty"
    if any(c.isspace() or not c.isprintable() for c in subject):
        return "holds whitespace or a control character"
    for token in subject.split("."):
        if not token:
            return "has an empty token (two dots, or a dot at an end)"
        if token in ("*", ">"):
            return f"has a wildcard token {token!r}"
    return None
