"""Throttles, budget, completion records and verification over the in-memory store.

The clock is a fake the test advances; escalations land in a recording publisher.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from remediator.actions.base import StepContext
from remediator.engine.engine import Engine
from remediator.engine.guards import Budget, Guards
from remediator.engine.leases import hold
from remediator.engine.state import MemoryStore
from remediator.model import Delivery, Event
from remediator.rules.loader import load_rules
from remediator.rules.matching import RuleIndex
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates


@dataclass
class Recorder:
    """A Publisher and an Action at once: it records what it was given."""

    published: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    runs: list[Mapping[str, object]] = field(default_factory=list)

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str]
    ) -> dict[str, object]:
        self.published.append((subject, json.loads(data)))
        return {}

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        self.runs.append(request)
        return {"ok": True}

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def build(
    tmp_path: Path, text: str, budget: Budget | None = None
) -> tuple[Engine, Recorder, Clock]:
    (tmp_path / "r.yaml").write_text(text)
    secrets = Secrets({})
    rules = load_rules([tmp_path / "r.yaml"], Templates(secrets))
    recorder, clock = Recorder(), Clock()
    guards = Guards(
        store=MemoryStore(),
        verifications=MemoryStore(),
        publisher=recorder,
        budget=budget,
        clock=clock,
    )
    engine = Engine.build(
        RuleIndex(rules), {"http": recorder, "publish": recorder}, secrets, guards=guards
    )
    return engine, recorder, clock


def event(payload: dict[str, object], event_id: str, subject: str = "disk.full") -> Event:
    return Event(subject=subject, headers={}, payload=payload, event_id=event_id, trace_id="t")


RULE = """
rules:
  - name: clean
    on: [disk.full]
    throttle: {key: "{{ event.host }}", %s}
    actions:
      - http: {url: "http://example.invalid/{{ event.host }}"}
"""


async def test_cooldown_is_per_key(tmp_path: Path) -> None:
    engine, recorder, _ = build(tmp_path, RULE % "cooldown: 1h")
    statuses = [(await engine.process(event({"host": "a"}, f"a{i}")))[0].status for i in range(10)]
    b = (await engine.process(event({"host": "b"}, "b0")))[0]
    assert statuses == ["succeeded"] + ["throttled"] * 9
    assert b.status == "succeeded"
    assert len(recorder.runs) == 2


async def test_cooldown_expires(tmp_path: Path) -> None:
    engine, recorder, clock = build(tmp_path, RULE % "cooldown: 5m")
    await engine.process(event({"host": "a"}, "1"))
    clock.now += 301
    (second,) = await engine.process(event({"host": "a"}, "2"))
    assert second.status == "succeeded" and len(recorder.runs) == 2


async def test_circuit_opens_after_max_runs_and_escalates_once(tmp_path: Path) -> None:
    engine, recorder, clock = build(tmp_path, RULE % "max_runs: 3, window: 1h, escalate: ops.x")
    results = []
    for i in range(6):
        clock.now += 1
        results.extend(await engine.process(event({"host": "a"}, f"e{i}")))
    assert [r.status for r in results] == ["succeeded"] * 3 + ["throttled"] * 3
    assert all("circuit open" in (r.reason or "") for r in results[3:])
    escalations = [p for p in recorder.published if p[0] == "ops.x"]
    assert len(escalations) == 1 and escalations[0][1]["reason"] == "circuit_open"
    clock.now += 3600
    (later,) = await engine.process(event({"host": "a"}, "after"))
    assert later.status == "succeeded"


async def test_budget_suppresses_past_its_limit(tmp_path: Path) -> None:
    engine, recorder, _ = build(tmp_path, RULE % "cooldown: 1h", Budget(5, 300))
    results = [(await engine.process(event({"host": f"h{i}"}, f"e{i}")))[0] for i in range(20)]
    assert [r.status for r in results].count("succeeded") == 5
    assert [r.status for r in results].count("suppressed") == 15
    budget = [p for p in recorder.published if p[1]["reason"] == "budget_spent"]
    assert len(budget) == 1


async def test_redelivered_completed_event_is_not_run_again(tmp_path: Path) -> None:
    engine, recorder, _ = build(tmp_path, RULE % "cooldown: 1h")
    (first,) = await engine.process(event({"host": "a"}, "same"))
    redelivered = dataclasses.replace(
        event({"host": "a"}, "same"), delivery=Delivery(stream="S", sequence=1, num_delivered=2)
    )
    (again,) = await engine.process(redelivered)
    assert len(recorder.runs) == 1
    assert again.to_json() == first.to_json()


VERIFY = """
rules:
  - name: fix
    on: [alerts.X]
    throttle: {key: "{{ event.fingerprint }}", max_runs: 5, window: 1h}
    verify: {resolved_within: 10m, key: "{{ event.fingerprint }}", escalate: ops.verify}
    actions:
      - http: {url: "http://example.invalid"}
"""


async def test_verification_resolved_in_time(tmp_path: Path) -> None:
    engine, recorder, clock = build(tmp_path, VERIFY)
    await engine.process(event({"fingerprint": "f1", "status": "firing"}, "1", "alerts.X"))
    clock.now += 60
    fired = await engine.process(
        event({"fingerprint": "f1", "status": "resolved"}, "2", "alerts.X")
    )
    clock.now += 3600
    assert await engine.guards.expire({}) == []  # type: ignore[union-attr]
    assert fired == []  # a resolving event fires nothing unless a rule asks for it
    assert [p[0] for p in recorder.published] == ["remediator.verified.fix"]


async def test_verification_not_resolved_escalates_and_opens_the_circuit(tmp_path: Path) -> None:
    engine, recorder, clock = build(tmp_path, VERIFY)
    await engine.process(event({"fingerprint": "f1", "status": "firing"}, "1", "alerts.X"))
    clock.now += 601
    guards = engine.guards
    assert guards is not None
    assert await guards.expire({r.name: r for r in engine.index.rules}) == ["fix"]
    assert await guards.expire({r.name: r for r in engine.index.rules}) == []
    (escalation,) = recorder.published
    assert escalation[0] == "ops.verify" and escalation[1]["reason"] == "not_resolved"
    (next_run,) = await engine.process(event({"fingerprint": "f1"}, "3", "alerts.X"))
    assert next_run.status == "throttled" and "not verified" in (next_run.reason or "")


async def test_an_approved_run_waits_for_the_throttle_keys_lease(tmp_path: Path) -> None:
    """Two approved requests for one key (or one beside an ordinary run) never run at once:
    the second takes the lease only once the first released it, and counts no run."""
    engine, _recorder, _clock = build(tmp_path, RULE % "cooldown: 1h")
    guards = engine.guards
    assert guards is not None
    (rule,) = engine.index.rules
    first = await hold(guards, rule, "h1")
    waited: list[float] = []

    async def sleep(seconds: float) -> None:  # the first run ends while the second waits
        waited.append(seconds)
        await guards.release(first)

    guards.sleep = sleep
    second = await hold(guards, rule, "h1")
    other = await hold(guards, rule, "h2")  # another key: no wait
    assert second.status == "run" and second.token != first.token and len(waited) == 1
    assert other.status == "run" and len(waited) == 1
    entry = await guards.store.get(str(second.key))
    assert entry is not None and json.loads(entry.value)["runs"] == []
