"""Windows: when a rule may act, compiled at load and asked with a time (pure).

A rule's `windows: {allow: [{days, hours, tz}], deny: [{from, to}]}` becomes one
`RuleWindows`: `open_at(when)` says whether the rule may act at that instant and
`next_open(when)` when it may next. Deny wins over allow; no `allow` means
always. An `allow` entry's `days` and `hours` are each optional and read in its
`tz` (default UTC), so "08:00-18:00 Europe/Berlin" follows daylight saving. An
`hours` range that crosses midnight (`22:00-06:00`) belongs to the day it starts
on: `days: [fri]` with `22:00-06:00` is Friday night into Saturday morning.
No clock is read here: the engine hands in its own (tests pass a fake one).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from remediator.model import Rule

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS_PATTERN = r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$"
_HOURS = re.compile(HOURS_PATTERN)
Path = tuple[str | int, ...]
Problems = list[tuple[Path, str]]  # (where in `windows`, message)
_LOOKAHEAD_DAYS = 8  # a weekly window opens within a week of any instant outside a deny


@dataclass(frozen=True, slots=True)
class Allow:
    """One `allow` entry: weekdays (0 = Monday) and minutes of the day, in `zone`."""

    days: frozenset[int] | None
    start: int | None  # minute of the day; None: all day
    end: int | None
    zone: dt.tzinfo

    def admits(self, when: dt.datetime) -> bool:
        local = when.astimezone(self.zone)
        day, minute = local.weekday(), local.hour * 60 + local.minute
        if self.start is None or self.end is None:
            return self._on(day)
        if self.start < self.end:
            return self._on(day) and self.start <= minute < self.end
        # Across midnight: the evening of a listed day, or the morning after one.
        return (self._on(day) and minute >= self.start) or (
            self._on((day - 1) % 7) and minute < self.end
        )

    def _on(self, day: int) -> bool:
        return self.days is None or day in self.days

    def openings(self, after: dt.datetime) -> list[dt.datetime]:
        """Instants at which this entry may open, from the day before `after` on."""
        local = after.astimezone(self.zone)
        found = []
        for offset in range(-1, _LOOKAHEAD_DAYS + 1):
            date = local.date() + dt.timedelta(days=offset)
            minute = self.start or 0
            naive = dt.datetime.combine(date, dt.time(minute // 60, minute % 60))
            found.append(naive.replace(tzinfo=self.zone).astimezone(dt.UTC))
        return found


@dataclass(frozen=True, slots=True)
class Deny:
    start: dt.datetime
    end: dt.datetime

    def covers(self, when: dt.datetime) -> bool:
        return self.start <= when < self.end


@dataclass(frozen=True, slots=True)
class RuleWindows:
    allow: tuple[Allow, ...] = ()
    deny: tuple[Deny, ...] = ()

    def open_at(self, when: dt.datetime) -> bool:
        if any(deny.covers(when) for deny in self.deny):
            return False
        return not self.allow or any(entry.admits(when) for entry in self.allow)

    def next_open(self, when: dt.datetime) -> dt.datetime | None:
        """The first instant from `when` on at which the rule may act (`when` itself when
        open now); None when no window opens within the look-ahead."""
        if self.open_at(when):
            return when
        candidates = {deny.end for deny in self.deny if deny.end > when}
        for start in (when, *candidates):
            candidates.update(t for a in self.allow for t in a.openings(start) if t > when)
        for candidate in sorted(candidates):
            if self.open_at(candidate):
                return candidate
        return None

    def state(self, when: dt.datetime) -> dict[str, object]:
        """For `/api/rules` and the console: open now, and when the rule may act next."""
        opens = self.next_open(when)
        return {"open": opens == when, "next_open": None if opens is None else iso(opens)}

    def describe(self, when: dt.datetime) -> str:
        """Why a run at `when` did nothing, and when one may act."""
        opens = self.next_open(when)
        after = "no window opens in the next week" if opens is None else f"next opens {iso(opens)}"
        return f"outside its windows at {iso(when)}: {after}"


def windows_report(rules: Iterable[Rule], when: dt.datetime) -> list[dict[str, object]]:
    """Each rule with windows: open at `when`, and when it may act next (`status`)."""
    return [{"rule": r.name, **r.windows.state(when)} for r in rules if r.windows is not None]


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# --- compiling `windows:` (the schema has checked the shape; values are checked here) ----


def compile_windows(raw: Mapping[str, object]) -> tuple[RuleWindows, Problems]:
    """The compiled windows and the problems found, each (field path, message)."""
    problems: Problems = []
    allow = [
        _allow(entry, ("allow", i), problems) for i, entry in enumerate(_list(raw.get("allow")))
    ]
    deny = [_deny(entry, ("deny", i), problems) for i, entry in enumerate(_list(raw.get("deny")))]
    windows = RuleWindows(
        allow=tuple(a for a in allow if a is not None), deny=tuple(d for d in deny if d is not None)
    )
    return windows, problems


def _list(value: object) -> Sequence[Mapping[str, object]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _allow(raw: Mapping[str, object], at: Path, problems: Problems) -> Allow | None:
    zone = zone_named(raw.get("tz", "UTC"), (*at, "tz"), problems)
    days = raw.get("days")
    start = end = None
    if isinstance(hours := raw.get("hours"), str):
        found = _HOURS.match(hours)
        if found is None:
            problems.append(((*at, "hours"), f"{hours!r} is not HH:MM-HH:MM"))
            return None
        h1, m1, h2, m2 = (int(part) for part in found.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end or end > 24 * 60:
            problems.append(((*at, "hours"), f"{hours!r} is an empty or impossible range"))
            return None
    picked = None if not isinstance(days, list) else frozenset(DAYS.index(d) for d in days)
    return None if zone is None else Allow(days=picked, start=start, end=end, zone=zone)


def zone_named(name: object, at: Path, problems: Problems) -> dt.tzinfo | None:
    if name == "UTC":
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(str(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append((at, f"unknown time zone {name!r} (an IANA name: Europe/Berlin)"))
        return None


def _deny(raw: Mapping[str, object], at: Path, problems: Problems) -> Deny | None:
    start = parse_instant(raw.get("from"), (*at, "from"), problems)
    end = parse_instant(raw.get("to"), (*at, "to"), problems)
    if start is None or end is None:
        return None
    if end <= start:
        problems.append(((*at, "to"), f"{iso(end)} is not after from {iso(start)}"))
        return None
    return Deny(start=start, end=end)


def parse_instant(value: object, at: Path, problems: Problems) -> dt.datetime | None:
    """An ISO-8601 date-time with its offset (`2026-12-24T00:00:00Z`); a bare date is its
    midnight UTC."""
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        problems.append((at, f"{value!r} is not an ISO-8601 date-time (2026-12-24T00:00:00Z)"))
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
