"""Scheduled rules without a server: the ticks (pure, clock given) and the claim that lets
one replica fire each, over the in-memory store with the bucket's compare-and-set."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from remediator.engine.schedule import Ticks, latest_tick, next_tick, tick_event
from remediator.engine.state import MemoryStore
from remediator.errors import RuleErrors
from remediator.model import Rule, Schedule, Source
from remediator.offline.explain import explain_event
from remediator.offline.rulecases import run_cases
from remediator.rules.loader import load_rules
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def rule(name: str, schedule: Schedule) -> Rule:
    return Rule(name=name, subjects=(), schedule=schedule, source=Source(file="f", line=1))


def test_every_ticks_on_the_clock_so_replicas_agree() -> None:
    five = Schedule(every=300.0)
    now = at("2026-12-07T21:07:31+00:00")
    assert latest_tick(five, now) == at("2026-12-07T21:05:00+00:00")
    assert next_tick(five, now) == at("2026-12-07T21:10:00+00:00")
    exactly = at("2026-12-07T21:10:00+00:00")
    assert latest_tick(five, exactly) == exactly


def test_cron_is_read_in_its_time_zone_across_daylight_saving() -> None:
    nightly = Schedule(cron="0 3 * * *", tz="Europe/Berlin")
    # Winter: 03:00 in Berlin is 02:00 UTC; summer: 01:00 UTC.
    assert next_tick(nightly, at("2026-12-07T12:00:00+00:00")) == at("2026-12-08T02:00:00+00:00")
    assert next_tick(nightly, at("2026-07-01T12:00:00+00:00")) == at("2026-07-02T01:00:00+00:00")
    # 02:30 does not exist on 2026-03-29 in Berlin (clocks go 02:00 -> 03:00): like
    # Debian's cron, the job runs once, right after the jump, and the next day as usual.
    skipped = Schedule(cron="30 2 * * *", tz="Europe/Berlin")
    first = next_tick(skipped, at("2026-03-28T12:00:00+00:00"))
    assert first == at("2026-03-29T01:00:00+00:00")
    assert next_tick(skipped, first) == at("2026-03-30T00:30:00+00:00")
    # 02:30 happens twice on 2026-10-25 (clocks go 03:00 -> 02:00): it runs once.
    first = next_tick(skipped, at("2026-10-24T12:00:00+00:00"))
    assert first == at("2026-10-25T00:30:00+00:00")
    assert next_tick(skipped, first) == at("2026-10-26T01:30:00+00:00")
    # A job every 30 minutes keeps running through the repeated hour.
    half = Schedule(cron="*/30 * * * *", tz="Europe/Berlin")
    assert next_tick(half, at("2026-10-25T00:30:00+00:00")) == at("2026-10-25T01:00:00+00:00")
    exact = at("2026-12-08T02:00:00+00:00")
    assert latest_tick(nightly, exact) == exact


def test_the_event_of_a_tick() -> None:
    event = tick_event("reconcile", at("2026-12-07T21:05:00+00:00"), "t-1")
    assert event.subject == "remediator.schedule.reconcile"
    assert event.event_id == "schedule:reconcile:2026-12-07T21:05:00Z"
    assert event.payload == {"schedule": {"rule": "reconcile", "tick": "2026-12-07T21:05:00Z"}}
    assert event.trigger == {"by": "schedule", "at": "2026-12-07T21:05:00Z"}


async def test_each_tick_fires_once_across_replicas_and_only_the_latest_missed() -> None:
    store = MemoryStore()
    one, two = Ticks(store, "a"), Ticks(store, "b")
    rules = [rule("r", Schedule(every=60.0))]
    start = at("2026-12-07T21:00:30+00:00")
    # First sight: the record starts at the latest tick, nothing fires (a new rule does
    # not run at the moment it is deployed).
    assert await one.due(rules, start) == []
    assert await two.due(rules, start) == []
    tick = at("2026-12-07T21:01:00.2+00:00")
    fired = await one.due(rules, tick) + await two.due(rules, tick)
    assert [(r.name, t) for r, t in fired] == [("r", "2026-12-07T21:01:00Z")]
    # Every replica down for five ticks; a new one starts: the latest missed tick, once.
    later = at("2026-12-07T21:06:10+00:00")
    three, four = Ticks(store, "c"), Ticks(store, "d")
    fired = await three.due(rules, later) + await four.due(rules, later)
    assert [t for _, t in fired] == ["2026-12-07T21:06:00Z"]
    assert await three.due(rules, later + dt.timedelta(seconds=5)) == []


RULES = """
rules:
  - name: reconcile
    schedule: {every: 5m}
    actions:
      - publish: {subject: ops.reconcile, json: {tick: "{{ event.schedule.tick }}"}}
  - name: nightly
    schedule: {cron: "0 3 * * *", tz: Europe/Berlin}
    actions:
      - publish: {subject: ops.nightly, json: {}}
"""


async def test_cases_name_a_tick_and_explain_says_when_it_runs(tmp_path: Path) -> None:
    rules = tmp_path / "s.yaml"
    rules.write_text(RULES)
    (tmp_path / "s.cases.yaml").write_text(
        """
cases:
  - name: 03:00 in Berlin runs both
    tick: "2026-12-08T02:00:00Z"
    expect:
      fired: [reconcile, nightly]
      steps:
        reconcile:
          publish-0: {subject: ops.reconcile, json: {tick: "2026-12-08T02:00:00Z"}}
  - name: between ticks nothing runs
    tick: "2026-12-08T02:01:00Z"
    expect: {fired: []}
"""
    )
    report = await run_cases([rules], [], Secrets({}))
    assert report.passed, report.text()
    explained = explain_event([rules], "any.subject", {}, b"{}", Secrets({}))
    assert "reconcile  runs on a clock (every 5m), not on events: next run 20" in explained


def test_validate_names_a_bad_cron_and_time_zone(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.replace('"0 3 * * *"', '"0 25 * * *"').replace("Europe/Berlin", "Mars/X"))
    with pytest.raises(RuleErrors) as raised:
        load_rules([bad], Templates(Secrets({})))
    text = str(raised.value)
    assert f"{bad}:8: rule nightly: schedule.cron: bad cron expression '0 25 * * *'" in text
    assert f"{bad}:8: rule nightly: schedule.tz: unknown time zone 'Mars/X'" in text
