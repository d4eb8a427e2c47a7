"""`schedule:` checked at load: a cron expression the parser accepts, a known time zone.

Ticks themselves are computed in `engine.schedule`; this module only says, at
load time and with the field's place, what is wrong with a schedule.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from cronsim import CronSim, CronSimError


def tz_problem(tz: str) -> str | None:
    if tz in ("UTC", "Z"):
        return None
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {tz!r} (an IANA name such as Europe/Berlin, or UTC)"
    return None


def cron_problem(expression: str) -> str | None:
    try:
        CronSim(expression, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    except CronSimError as exc:
        return f"bad cron expression {expression!r}: {exc}"
    return None
