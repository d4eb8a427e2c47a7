"""Matching builds the template context only for a rule with `when` (issue 25): most
rules have none and most events fire nothing, so building it for each was wasted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from remediator.engine.engine import Engine
from remediator.model import Event
from remediator.rules.loader import load_rules
from remediator.rules.matching import RuleIndex
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates

RULES = """
rules:
  - name: plain
    on: [plain.alert]
    match: {value: {gt: 90}}
    actions: [{publish: {subject: out.x, json: {a: 1}}}]
  - name: judged
    on: [judged.alert]
    when: "event.value > 90 and subject == 'judged.alert'"
    actions: [{publish: {subject: out.x, json: {a: 1}}}]
"""


def test_the_context_is_built_for_a_when_only(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULES)
    secrets = Secrets({})
    rules = load_rules([tmp_path / "r.yaml"], Templates(secrets))
    engine = Engine.build(RuleIndex(rules), {}, secrets)
    reads: list[dt.datetime] = []

    def clock() -> dt.datetime:  # `now` is read once per context built
        reads.append(dt.datetime.now(dt.UTC))
        return reads[-1]

    engine.now = clock

    def event(subject: str, value: int) -> Event:
        payload = {"value": value}
        return Event(subject=subject, headers={}, payload=payload, event_id="e", trace_id="t")

    assert [r.name for r in engine.fired(event("plain.alert", 95))] == ["plain"]
    assert engine.fired(event("plain.alert", 50)) == ()
    assert reads == []
    assert [r.name for r in engine.fired(event("judged.alert", 95))] == ["judged"]
    assert engine.fired(event("judged.alert", 50)) == ()
    assert len(reads) == 2
