"""Windows (SPEC §17): when a rule may act, on an injected clock, across midnight and a
daylight-saving change; `validate` placing a bad window at its file and line; the engine
reporting `outside_window` and spending nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from remediator.cli import main
from remediator.errors import RuleErrors
from remediator.rules.loader import load_rules
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates
from remediator.rules.windows import compile_windows
from tests.test_guards import build, event

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def windows(raw: dict[str, object]):  # type: ignore[no-untyped-def]
    compiled, problems = compile_windows(raw)
    assert problems == []
    return compiled


OFFICE = {"allow": [{"days": ["mon", "tue", "wed", "thu", "fri"], "hours": "08:00-18:00",
                     "tz": "Europe/Berlin"}]}  # fmt: skip


def test_office_hours_in_a_named_zone_follow_daylight_saving() -> None:
    w = windows(OFFICE)
    # Summer (CEST, UTC+2): 08:00 Berlin is 06:00 UTC; winter (CET, UTC+1): 07:00 UTC.
    assert not w.open_at(at("2026-10-23T05:59:00Z")) and w.open_at(at("2026-10-23T06:00:00Z"))
    # The clocks go back on Sunday 2026-10-25: Monday opens an hour later in UTC.
    assert not w.open_at(at("2026-10-26T06:30:00Z")) and w.open_at(at("2026-10-26T07:00:00Z"))
    assert w.next_open(at("2026-10-24T12:00:00Z")) == at("2026-10-26T07:00:00Z")
    assert w.next_open(at("2026-10-23T16:00:00Z")) == at("2026-10-26T07:00:00Z")
    assert w.open_at(at("2026-10-26T16:59:00Z")) and not w.open_at(at("2026-10-26T17:00:00Z"))


def test_spring_forward_gap_opens_at_the_first_real_instant() -> None:
    # 2027-03-28 02:00 Berlin does not exist (clocks jump to 03:00).
    w = windows({"allow": [{"hours": "02:30-04:00", "tz": "Europe/Berlin"}]})
    assert w.next_open(at("2027-03-27T22:00:00Z")) == at("2027-03-28T01:30:00Z")  # 03:30 CEST
    assert w.open_at(at("2027-03-28T01:45:00Z")) and not w.open_at(at("2027-03-28T02:00:00Z"))


def test_hours_across_midnight_belong_to_the_day_they_start() -> None:
    w = windows({"allow": [{"days": ["fri"], "hours": "22:00-06:00"}]})
    assert w.open_at(at("2026-12-11T22:00:00Z"))  # Friday night
    assert w.open_at(at("2026-12-12T05:59:00Z"))  # Saturday morning, still Friday's night
    assert not w.open_at(at("2026-12-12T06:00:00Z"))
    assert not w.open_at(at("2026-12-11T05:00:00Z"))  # Friday morning: Thursday's night
    assert w.next_open(at("2026-12-12T07:00:00Z")) == at("2026-12-18T22:00:00Z")


def test_deny_wins_over_allow_and_no_allow_means_always() -> None:
    freeze = {"from": "2026-12-24T00:00:00Z", "to": "2026-12-27T00:00:00Z"}
    w = windows({"deny": [freeze]})
    assert w.open_at(at("2026-12-23T23:59:00Z")) and not w.open_at(at("2026-12-25T12:00:00Z"))
    assert w.next_open(at("2026-12-25T12:00:00Z")) == at("2026-12-27T00:00:00Z")
    both = windows({**OFFICE, "deny": [freeze]})
    assert not both.open_at(at("2026-12-24T10:00:00Z"))  # a Thursday in office hours
    assert both.next_open(at("2026-12-24T10:00:00Z")) == at("2026-12-28T07:00:00Z")  # Monday
    assert "next opens 2026-12-28T07:00:00Z" in both.describe(at("2026-12-24T10:00:00Z"))


def test_days_alone_and_hours_alone() -> None:
    weekend = windows({"allow": [{"days": ["sat", "sun"]}]})
    assert weekend.open_at(at("2026-12-12T00:00:00Z")) and not weekend.open_at(
        at("2026-12-11T23:59:00Z")
    )
    nights = windows({"allow": [{"hours": "22:00-06:00"}]})
    assert nights.open_at(at("2026-12-09T03:00:00Z")) and not nights.open_at(
        at("2026-12-09T12:00:00Z")
    )


BAD = """\
rules:
  - name: restart
    on: [alerts.x]
    windows:
      allow:
        - days: [mon]
          tz: Mars/Olympus
        - hours: "10:00-24:30"
        - hours: "08:00-08:00"
      deny:
        - {from: "2026-12-27T00:00:00Z", to: "2026-12-24T00:00:00Z"}
        - {from: "christmas", to: "2026-12-24T00:00:00Z"}
    actions:
      - http: {url: "http://example.invalid"}
"""


def test_validate_places_each_bad_window_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(BAD)
    with pytest.raises(RuleErrors) as caught:
        load_rules([tmp_path / "r.yaml"], Templates(Secrets({})))
    lines = [str(e) for e in caught.value.errors]
    file = tmp_path / "r.yaml"
    assert any(line.startswith(f"{file}:8: rule restart: windows.allow[1].hours") for line in lines)
    assert any(
        f"{file}:7: rule restart: windows.allow[0].tz: unknown time zone" in x for x in lines
    )
    assert any(f"{file}:9:" in x and "empty or impossible" in x for x in lines)
    assert any(f"{file}:11:" in x and "is not after from" in x for x in lines)
    assert any(f"{file}:12:" in x and "not an ISO-8601" in x for x in lines)


RESTART = """
rules:
  - name: restart
    on: [alerts.X]
    throttle: {cooldown: 1h}
    windows:
      allow: [{days: [mon, tue, wed, thu, fri], hours: "08:00-18:00", tz: Europe/Berlin}]
    actions:
      - http: {url: "http://example.invalid"}
"""


async def test_outside_its_windows_a_rule_runs_nothing_and_spends_nothing(tmp_path: Path) -> None:
    engine, recorder, _ = build(tmp_path, RESTART)
    engine.now = lambda: at("2026-12-13T02:00:00Z")  # Sunday night
    (result,) = await engine.process(event({"n": 1}, "1", "alerts.X"))
    assert result.status == "outside_window"
    assert result.reason is not None and "next opens 2026-12-14T07:00:00Z" in result.reason
    assert recorder.runs == []
    engine.now = lambda: at("2026-12-14T09:00:00Z")  # Monday 10:00 in Berlin
    (result,) = await engine.process(event({"n": 2}, "2", "alerts.X"))
    assert result.status == "succeeded"  # the cooldown was not spent on Sunday
    assert len(recorder.runs) == 1


CASES = """
cases:
  - name: a weekday morning acts
    subject: alerts.X
    at: "2026-12-14T09:30:00+01:00"
    event: {n: 1}
    expect: {fired: [restart]}
  - name: a Sunday night does not
    subject: alerts.X
    at: "2026-12-13T03:00:00+01:00"
    event: {n: 1}
    expect: {fired: []}
"""


def test_rule_cases_set_the_time_with_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r.yaml").write_text(RESTART)
    (tmp_path / "r.cases.yaml").write_text(CASES)
    assert main(["test", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rule restart: outside its windows at 2026-12-13T02:00:00Z" in out
    (tmp_path / "r.cases.yaml").write_text(CASES.replace('"2026-12-13T03:00:00+01:00"', "monday"))
    assert main(["test", str(tmp_path)]) == 2
    assert "r.cases.yaml:10: cases[1].at: 'monday' is not an ISO-8601" in capsys.readouterr().err
