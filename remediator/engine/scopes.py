"""What a pause or resume addresses: rule names, a throttle key or every rule, checked and
bounded (a name becomes part of a bucket key and a subject), and the rules a typo meant.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable

from remediator.engine.control import ALL, Pause

MAX_NAME = 256  # characters of a rule name a pause may address
MAX_KEY = 1024  # bytes of a throttle-key value (as guards.KEY_CAP keeps them)
MAX_REASON = 4096  # characters of a pause's reason
MAX_PAUSE = 366 * 86400.0  # seconds: a pause ends; a longer one is a rule to remove
_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ScopeError(ValueError):
    """A pause or resume that names no scope, or an impossible one."""


def scopes(rules: Iterable[str], every: bool, key: str | None) -> list[tuple[str, str | None]]:
    """(scope, key) pairs that `pause`/`resume` of RULE... [--all] [--key] address."""
    names = list(dict.fromkeys(rules))
    for name in names:  # a name becomes part of a key and a subject: bounded, plain
        if len(name) > MAX_NAME or not _NAME.fullmatch(name):
            shown = name[:40] + ("..." if len(name) > 40 else "")
            raise ScopeError(
                f"{shown!r} is not a rule name (up to {MAX_NAME} letters, digits, '_', '-')"
            )
    if key is not None and len(key.encode(errors="replace")) > MAX_KEY:
        raise ScopeError(f"--key is over {MAX_KEY} bytes: no throttle key is that long")
    if every and (names or key is not None):
        raise ScopeError("--all pauses every rule: give no rule names and no --key with it")
    if not every and not names:
        raise ScopeError("name the rules to pause, or give --all")
    return [(ALL, None)] if every else [(name, key) for name in names]


def pauses_for(
    rules: Iterable[str],
    every: bool,
    key: str | None,
    *,
    seconds: float,
    reason: str,
    by: str,
    now: float,
) -> list[Pause]:
    if not 0 < seconds <= MAX_PAUSE:  # NaN fails this too
        raise ScopeError(
            f"a pause must last longer than 0s and at most {MAX_PAUSE / 86400:g} days, "
            f"got {seconds:g}s"
        )
    if len(reason) > MAX_REASON:
        raise ScopeError(f"the reason is over {MAX_REASON} characters")
    return [
        Pause(scope=scope, key=k, by=by, reason=reason, since=now, until=now + seconds)
        for scope, k in scopes(rules, every, key)
    ]


def resume_targets(rules: Iterable[str], every: bool, key: str | None) -> list[Pause]:
    """What `resume` addresses: pauses with only `name` (the bucket key) and `what` (the
    words for people) to go by."""
    return [
        Pause(scope=scope, key=k, by="", since=0.0, until=0.0)
        for scope, k in scopes(rules, every, key)
    ]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a known name is close to `name`, else nothing."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_rule_names(names: Iterable[str], known: Collection[str]) -> None:
    """ScopeError naming every rule in `names` not in `known`: a typo in a pause would
    otherwise pause nothing while saying \"paused\"."""
    unknown = [n for n in dict.fromkeys(names) if n not in known]
    if unknown:
        raise ScopeError("; ".join(f"unknown rule {n!r}{did_you_mean(n, known)}" for n in unknown))
