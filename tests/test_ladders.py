"""Escalation ladders (SPEC §17): a failed verification fires `verify.escalate_rule` with
the original event plus `escalation`; the next rung obeys its own windows and approval;
`validate` refuses a loop and an unknown rule at the field's file and line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from remediator.errors import RuleErrors
from remediator.metrics import Metrics
from remediator.rules.loader import load_rules
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates
from tests.test_guards import build, event
from tests.test_verify_query import Answers

LADDER = """
rules:
  - name: restart
    on: [alerts.NodeUnhealthy]
    verify: {resolved_within: 10m, key: "{{ event.node }}", escalate_rule: drain}
    actions:
      - http: {url: "http://example.invalid/restart/{{ event.node }}"}
  - name: drain
    on: [never.this]
    throttle: {key: "{{ event.node }}", cooldown: 1h}
    verify: {resolved_within: 10m, key: "{{ event.node }}", escalate_rule: cordon}
    actions:
      - http: {url: "http://x.invalid/drain/{{ event.node }}/{{ event.escalation.from_rule }}"}
  - name: cordon
    on: [never.that]
    windows:
      allow: [{days: [mon, tue, wed, thu, fri], hours: "08:00-18:00", tz: Europe/Berlin}]
    approval: {timeout: 30m}
    actions:
      - http: {url: "http://example.invalid/cordon/{{ event.node }}"}
"""


async def test_a_ladder_climbs_rung_by_rung_with_the_original_event(tmp_path: Path) -> None:
    engine, recorder, clock = build(tmp_path, LADDER)
    engine.metrics = Metrics(CollectorRegistry())
    engine.now = lambda: dt.datetime(2026, 12, 14, 9, tzinfo=dt.UTC)  # a Monday morning
    (first,) = await engine.process(event({"node": "n1"}, "e1", "alerts.NodeUnhealthy"))
    assert first.status == "succeeded"
    clock.now += 601
    (second,) = await engine.check_verifications()
    assert second.rule == "drain" and second.status == "succeeded"
    assert second.event_id == "e1"  # `show e1` tells the whole climb
    assert recorder.runs[-1]["url"] == "http://x.invalid/drain/n1/restart"
    clock.now += 601
    (third,) = await engine.check_verifications()
    # The last rung asks a human (no desk here: it says it would) and acts on its own window.
    assert third.rule == "cordon" and third.status == "awaiting_approval"
    assert await engine.check_verifications() == []
    escalated = [body for subject, body in recorder.published if subject.endswith("escalations")]
    assert [body["rule"] for body in escalated] == ["restart", "drain"]  # still published
    sample = engine.metrics.registry.get_sample_value  # type: ignore[attr-defined]
    assert sample("remediator_ladder_escalations_total", {"rule": "restart", "to": "drain"}) == 1


async def test_the_escalation_is_in_the_event_and_the_rung_obeys_its_windows(
    tmp_path: Path,
) -> None:
    engine, recorder, clock = build(
        tmp_path, LADDER.replace("escalate_rule: drain", "escalate_rule: cordon")
    )
    engine.now = lambda: dt.datetime(2026, 12, 13, 2, tzinfo=dt.UTC)  # Sunday night
    await engine.process(event({"node": "n1"}, "e1", "alerts.NodeUnhealthy"))
    clock.now += 601
    (rung,) = await engine.check_verifications()
    assert rung.rule == "cordon" and rung.status == "outside_window"
    assert len(recorder.runs) == 1  # only the restart ran


async def test_the_rung_obeys_its_throttle(tmp_path: Path) -> None:
    engine, _, clock = build(tmp_path, LADDER)
    engine.now = lambda: dt.datetime(2026, 12, 14, 9, tzinfo=dt.UTC)
    await engine.process(event({"node": "n1"}, "e1", "alerts.NodeUnhealthy"))
    await engine.process(event({"node": "n1"}, "e2", "alerts.NodeUnhealthy"))
    clock.now += 601
    # One verification per node (the key): the second run's record replaced the first.
    (rung,) = await engine.check_verifications()
    assert rung.event_id == "e2" and rung.status == "succeeded"
    await engine.process(event({"node": "n1"}, "e3", "alerts.NodeUnhealthy"))
    clock.now += 601
    results = await engine.check_verifications()
    drains = [r for r in results if r.rule == "drain"]
    assert [r.status for r in drains] == ["throttled"]  # drain's cooldown: 1h per node


def problems(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(RuleErrors) as caught:
        load_rules([tmp_path / "r.yaml"], Templates(Secrets({})))
    return [str(e) for e in caught.value.errors]


def test_validate_refuses_a_loop_and_an_unknown_rule(tmp_path: Path) -> None:
    looped = LADDER.replace("escalate_rule: cordon", "escalate_rule: restart")
    found = problems(tmp_path, looped)
    file = tmp_path / "r.yaml"
    assert (
        f"{file}:5: rule restart: verify.escalate_rule: escalation loop: "
        "restart -> drain -> restart" in found
    )
    assert (
        f"{file}:11: rule drain: verify.escalate_rule: escalation loop: drain -> restart -> drain"
        in found
    )
    unknown = problems(tmp_path, LADDER.replace("escalate_rule: cordon", "escalate_rule: kordon"))
    assert unknown == [f"{file}:11: rule drain: verify.escalate_rule: unknown rule 'kordon'"]
    itself = problems(tmp_path, LADDER.replace("escalate_rule: drain", "escalate_rule: restart"))
    assert itself == [
        f"{file}:5: rule restart: verify.escalate_rule: escalation loop: restart -> restart"
    ]


BY_QUERY = """
rules:
  - name: heal
    on: [alerts.x]
    actions:
      - http: {url: "http://example.invalid/{{ event.service }}"}
    verify:
      query: 'max(errors{service="{{ event.service }}"})'
      below: 0.01
      within: 60s
      every: 10s
      escalate_rule: page
  - name: page
    on: [never.x]
    actions:
      - http: {url: "http://example.invalid/page/{{ event.escalation.detail }}"}
"""


async def test_a_query_that_never_held_climbs_the_ladder(tmp_path: Path) -> None:
    engine, recorder, clock = build(tmp_path, BY_QUERY)
    assert engine.guards is not None
    answers = engine.guards.verifier.querier = Answers()  # always 0.5: it never holds
    (first,) = await engine.process(event({"service": "web"}, "e1", "alerts.x"))
    assert first.status == "succeeded"
    for _ in range(5):  # asked every 10s, never holding
        clock.now += 10
        assert await engine.check_verifications() == []
    clock.now += 11  # past `within`
    (rung,) = await engine.check_verifications()
    assert rung.rule == "page" and rung.status == "succeeded"
    assert len(answers.asked) == 5
    assert "the query did not hold" in str(recorder.runs[-1]["url"])
