"""Rule test cases that name a clock tick: `tick: 2026-12-07T03:00:00Z` fires the scheduled
rules that have a tick at exactly that time, with the event the daemon would give them."""

from __future__ import annotations

import datetime as dt

from remediator.engine.engine import Engine
from remediator.engine.schedule import latest_tick, tick_event
from remediator.model import Result


def parse_tick(text: object) -> dt.datetime:
    """An ISO 8601 time; one without a zone is UTC."""
    moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


async def fire_tick(engine: Engine, tick: dt.datetime) -> list[Result]:
    """The results of every scheduled rule due exactly at `tick`."""
    results = []
    for rule in engine.index.rules:
        if rule.schedule is not None and latest_tick(rule.schedule, tick) == tick:
            results.append(await engine.run_rule(rule, tick_event(rule.name, tick, "0" * 32)))
    return results
