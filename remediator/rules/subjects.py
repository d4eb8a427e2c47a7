"""NATS subject patterns compared with each other (not with subjects: see `matching`).

Streams and core subscriptions want the smallest set of patterns that still
captures every rule's `on`: `alerts.>` makes `alerts.DiskFull` redundant, and
subscribing to both would deliver one message twice.
"""

from __future__ import annotations

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


def minimal_cover(patterns: Iterable[str]) -> list[str]:
    """The patterns none of the others covers, sorted; duplicates dropped."""
    unique = sorted(set(patterns))
    return [p for p in unique if not any(q != p and covers(q, p) for q in unique)]
