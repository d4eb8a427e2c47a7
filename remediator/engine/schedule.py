"""Scheduled rules: which tick is due, and the claim that makes one replica fire it.

Ticks are pure functions of the schedule and a time: `every: 5m` ticks on the
multiples of five minutes since the epoch (so every replica computes the same
ticks without talking), `cron` ticks where the expression says in its time
zone (cronsim: a wall-clock time skipped by a daylight-saving change does not
run, one repeated runs once, as Debian's cron does).

`Ticks` keeps one record per scheduled rule in a `StateStore` (`schedule.<rule>`:
the last tick fired, the next one). A replica that sees a later tick due than
the record holds moves the record to it by compare-and-set; only the one whose
write lands fires it. So a tick fires once across replicas, and after every
daemon was down only the latest missed tick fires. A rule seen for the first
time starts its record at the latest tick without firing it: a new nightly
job does not run in the afternoon it is deployed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field

from cronsim import CronSim

from remediator.engine.state import Conflict, Entry, StateStore, write
from remediator.model import Event, Rule, Schedule

_TINY = dt.timedelta(microseconds=1)


def _zone(schedule: Schedule) -> dt.tzinfo:
    return dt.UTC if schedule.tz in ("UTC", "Z") else zoneinfo.ZoneInfo(schedule.tz)


def latest_tick(schedule: Schedule, now: dt.datetime) -> dt.datetime:
    """The last tick at or before `now` (UTC)."""
    if schedule.every:
        stamp = math.floor(now.timestamp() / schedule.every) * schedule.every
        return dt.datetime.fromtimestamp(stamp, dt.UTC)
    assert schedule.cron is not None
    local = (now + _TINY).astimezone(_zone(schedule))
    return next(iter(CronSim(schedule.cron, local, reverse=True))).astimezone(dt.UTC)


def next_tick(schedule: Schedule, now: dt.datetime) -> dt.datetime:
    """The first tick after `now` (UTC)."""
    if schedule.every:
        stamp = (math.floor(now.timestamp() / schedule.every) + 1) * schedule.every
        return dt.datetime.fromtimestamp(stamp, dt.UTC)
    assert schedule.cron is not None
    local = now.astimezone(_zone(schedule))
    return next(iter(CronSim(schedule.cron, local))).astimezone(dt.UTC)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def tick_event(rule: str, tick: dt.datetime, trace_id: str | None = None) -> Event:
    """The event a tick fires its rule with (SPEC §15)."""
    stamp = iso(tick)
    return Event(
        subject=f"remediator.schedule.{rule}",
        headers={},
        payload={"schedule": {"rule": rule, "tick": stamp}},
        event_id=f"schedule:{rule}:{stamp}",
        trace_id=trace_id or uuid.uuid4().hex,
        trigger={"by": "schedule", "at": stamp},
    )


def record_key(rule: str) -> str:
    return f"schedule.{rule}"


@dataclass(slots=True)
class Ticks:
    """The claims in the store, and when to look again (no store read between ticks)."""

    store: StateStore
    identity: str = ""
    _due: dict[str, dt.datetime] = field(default_factory=dict)

    async def due(self, rules: Iterable[Rule], now: dt.datetime) -> list[tuple[Rule, str]]:
        """(rule, tick) this replica claimed and must fire now."""
        claimed = []
        for rule in rules:
            schedule = rule.schedule
            if schedule is None or (self._due.get(rule.name, now) > now):
                continue
            tick = latest_tick(schedule, now)
            self._due[rule.name] = next_tick(schedule, now)
            if await self._claim(rule.name, tick, self._due[rule.name]):
                claimed.append((rule, iso(tick)))
        return claimed

    async def _claim(self, rule: str, tick: dt.datetime, following: dt.datetime) -> bool:
        """Move the record to `tick`; True when this replica's write won and it fires."""
        key, stamp = record_key(rule), iso(tick)
        body = {"tick": stamp, "next": iso(following), "by": self.identity}
        while True:
            entry = await self.store.get(key)
            last = _last(entry)
            if last is not None and last >= stamp:
                return False  # fired already (here or by another replica)
            fires = entry is not None  # a first sight starts the record, fires nothing
            record = body if fires else body | {"tick": None, "since": stamp}
            try:
                await write(self.store, key, json.dumps(record).encode(), entry)
            except Conflict:
                continue
            return fires  # a first sight looks again at the following tick


def _last(entry: Entry | None) -> str | None:
    if entry is None:
        return None
    body = json.loads(entry.value)
    last = body.get("tick") or body.get("since")
    return str(last) if last else None
