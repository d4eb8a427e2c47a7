"""Verification by query over the in-memory store: turns, one asker per turn, the end.

The clock is a fake the test advances; the querier is a fake at our own seam (the
`Querier` protocol); tests/e2e/test_verify_query.py meets the real Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from remediator.engine.engine import Engine
from remediator.engine.guards import Guards
from remediator.engine.state import MemoryStore
from remediator.errors import StepError
from remediator.metrics import Metrics
from remediator.model import Event
from remediator.rules.loader import load_rules
from remediator.rules.matching import RuleIndex
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates
from tests.test_guards import Clock, Recorder

RULE = """
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
"""


@dataclass
class Answers:
    """A Querier answering from a list, recording what it was asked."""

    values: list[float | Exception | None] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    async def value(self, query: str) -> float | None:
        self.asked.append(query)
        answer = self.values.pop(0) if self.values else 0.5
        if isinstance(answer, Exception):
            raise answer
        return answer


def replicas(
    tmp_path: Path, count: int, answers: Answers | None
) -> tuple[list[Engine], Recorder, Clock, Metrics]:
    (tmp_path / "r.yaml").write_text(RULE)
    secrets = Secrets({})
    rules = load_rules([tmp_path / "r.yaml"], Templates(secrets))
    recorder, clock, metrics = Recorder(), Clock(), Metrics(CollectorRegistry())
    store, verifications = MemoryStore(), MemoryStore()  # shared, as the buckets are
    engines = []
    for _ in range(count):
        guards = Guards(
            store=store,
            verifications=verifications,
            publisher=recorder,
            clock=clock,
            querier=answers,
            metrics=metrics,
        )
        index = RuleIndex(rules)
        engines.append(Engine.build(index, {"http": recorder}, secrets, guards=guards))
    return engines, recorder, clock, metrics


def event(payload: dict[str, object], event_id: str = "e1") -> Event:
    return Event(subject="alerts.x", headers={}, payload=payload, event_id=event_id, trace_id="t")


async def sweep(engines: list[Engine]) -> None:
    rules = {rule.name: rule for rule in engines[0].index.rules}
    for engine in engines:
        assert engine.guards is not None
        await engine.guards.sweep_verifications(rules)


def published(recorder: Recorder, prefix: str) -> list[dict[str, object]]:
    return [body for subject, body in recorder.published if subject.startswith(prefix)]


async def test_asked_every_turn_by_one_replica_until_it_holds(tmp_path: Path) -> None:
    answers = Answers([0.5, 0.2, 0.004])
    engines, recorder, clock, metrics = replicas(tmp_path, 3, answers)
    (result,) = await engines[0].process(event({"service": "web"}))
    assert result.status == "succeeded"
    await sweep(engines)
    assert answers.asked == []  # a fix needs time to show: the first look waits `every`
    for _ in range(3):
        clock.now += 10
        await sweep(engines)  # three replicas look; one asks per turn
    assert answers.asked == ['max(errors{service="web"})'] * 3
    (verified,) = published(recorder, "remediator.verified.heal")
    assert verified["value"] == 0.004 and verified["query"] == 'max(errors{service="web"})'
    clock.now += 100
    await sweep(engines)
    assert published(recorder, "remediator.escalations") == []  # it ended once
    sample = metrics.registry.get_sample_value
    assert sample("remediator_verifications_total", {"rule": "heal", "result": "resolved"}) == 1


async def test_a_query_that_never_holds_escalates_once_at_the_deadline(tmp_path: Path) -> None:
    failure = StepError("Prometheus at http://p unreachable: refused")
    answers = Answers([0.5, failure, None, float("nan"), 0.3])
    engines, recorder, clock, metrics = replicas(tmp_path, 2, answers)
    await engines[0].process(event({"service": "api"}))
    for _ in range(7):
        clock.now += 10
        await sweep(engines)
    assert len(answers.asked) == 5  # asked at 10..50s; at 60s the deadline has come
    (late,) = published(recorder, "remediator.escalations")
    assert late["reason"] == "not_resolved" and late["rule"] == "heal"
    assert late["detail"] == (
        'the query did not hold (below 0.01) in time: max(errors{service="api"})'
    )
    assert published(recorder, "remediator.verified") == []
    sample = metrics.registry.get_sample_value
    assert sample("remediator_verifications_total", {"rule": "heal", "result": "not_resolved"}) == 1


async def test_a_resolving_event_does_not_end_a_query_verification(tmp_path: Path) -> None:
    answers = Answers([0.5])
    engines, recorder, clock, _ = replicas(tmp_path, 1, answers)
    await engines[0].process(event({"service": "web", "fingerprint": "f"}))
    await engines[0].process(event({"service": "web", "fingerprint": "f", "status": "resolved"}))
    assert published(recorder, "remediator.verified") == []
    clock.now += 10
    await sweep(engines)
    assert len(answers.asked) == 1  # still pending: the query decides


async def test_without_a_querier_nothing_is_recorded_or_guessed(tmp_path: Path) -> None:
    engines, recorder, clock, _ = replicas(tmp_path, 1, None)  # replay has no Prometheus
    await engines[0].process(event({"service": "web"}))
    clock.now += 1000
    await sweep(engines)
    assert recorder.published == []
