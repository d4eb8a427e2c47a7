"""Human control without a network: the pause view, the engine's pause check before the
guards, decisions, and the offline tools treating a rule with `approval` as one that asks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from prometheus_client import CollectorRegistry

from remediator.actions.base import StepContext
from remediator.cli import main
from remediator.engine.control import (
    EVENT_CAP,
    AlreadyDecided,
    ApprovalRequest,
    Pause,
    Pauses,
    decide,
)
from remediator.engine.engine import Engine
from remediator.engine.guards import Budget, Guards
from remediator.engine.reach import PROBE_KEY
from remediator.engine.scopes import ScopeError, check_rule_names, pauses_for, resume_targets
from remediator.engine.state import MemoryStore
from remediator.metrics import Metrics
from remediator.model import Delivery, Event
from remediator.nats.control import Control
from remediator.offline.replay import outcome
from remediator.offline.sandbox import offline_engine, offline_rules, offline_secrets
from remediator.rules.matching import RuleIndex


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, subject: str, data: bytes, headers: object) -> dict[str, object]:
        self.published.append(subject)
        return {}


RULES = """
rules:
  - name: fix
    on: [disk.full]
    throttle: {key: "{{ event.host }}", cooldown: 1h}
    actions:
      - http: {url: "http://fixer/{{ event.host }}"}
  - name: restart
    on: [web.down]
    approval:
      timeout: 10m
      notify:
        - http: {url: "http://chat/hook", json: {text: "{{ approval.url }}"}}
    actions:
      - http: {url: "http://restarter/{{ event.host }}"}
"""


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def pause(scope: str, key: str | None = None, until: float = 2000.0) -> Pause:
    return Pause(scope=scope, key=key, by="alice", reason="why", since=0.0, until=until)


def test_pause_view_scopes_and_expiry() -> None:
    clock = Clock()
    view = Pauses(clock=clock)
    view.apply("pause.key.fix.x", pause("fix", "a"))
    assert view.paused("fix", "a") is not None
    assert view.paused("fix", "b") is None and view.paused("other", "a") is None
    view.apply("pause.rule.other", pause("other"))
    assert view.paused("other", "anything") is not None
    everything = pause("all", until=1500.0)
    view.apply(everything.name, everything)
    assert view.paused("fix", "b") is everything
    clock.now = 1600.0  # the pause of everything has ended by itself
    assert view.paused("fix", "b") is None and view.expired() == [everything]
    view.apply("pause.rule.other", None)
    assert view.paused("other", "a") is None


def test_scopes_must_be_named() -> None:
    with pytest.raises(ScopeError):
        pauses_for([], False, None, seconds=60, reason="", by="a", now=0)
    with pytest.raises(ScopeError):
        pauses_for(["r"], True, None, seconds=60, reason="", by="a", now=0)
    (made,) = pauses_for(["r"], False, "h1", seconds=60, reason="", by="a", now=0)
    assert made.name.startswith("pause.key.r.") and made.until == 60


async def test_paused_rule_reports_and_spends_no_throttle_or_budget(rule_file: Path) -> None:
    secrets = offline_secrets({}, {})
    store, recorder = MemoryStore(), Recorder()
    guards = Guards(
        store=store,
        verifications=MemoryStore(),
        publisher=recorder,
        budget=Budget(1, 3600.0),
    )
    engine = offline_engine(offline_rules([rule_file], secrets), secrets, guards=guards)
    engine.dry_run = False  # the refusing actions are never reached while paused
    view = Pauses()
    view.apply("pause.key.fix.x", pause("fix", "a", until=10.0**12))
    engine.pauses = view
    event = Event(
        subject="disk.full", headers={}, payload={"host": "a"}, event_id="e1", trace_id="t"
    )
    (result,) = await engine.process(event)
    assert result.status == "paused" and result.steps == ()
    assert "alice" in str(result.reason) and "'a'" in str(result.reason)
    # Only the completion record and the reachability probe: no throttle bucket, no budget
    # spent, nothing escalated.
    assert [k for k in store.data if not k.startswith("done.") and k != PROBE_KEY] == []
    assert recorder.published == []


async def test_escalations_are_counted_by_reason(rule_file: Path) -> None:
    secrets = offline_secrets({}, {})
    metrics = Metrics(CollectorRegistry())
    guards = Guards(
        store=MemoryStore(),
        verifications=MemoryStore(),
        publisher=Recorder(),
        budget=Budget(1, 3600.0),
        metrics=metrics,
    )
    rules = offline_rules([rule_file], secrets)
    # As replay: spends the budget as the daemon would, runs nothing.
    engine = offline_engine(rules, secrets, guards=guards, simulate=True)
    for host in ("a", "b", "c"):
        event = Event(
            subject="disk.full", headers={}, payload={"host": host}, event_id=host, trace_id="t"
        )
        await engine.process(event)
    sample = metrics.registry.get_sample_value
    assert sample("remediator_escalations_total", {"reason": "budget_spent"}) == 1
    assert sample("remediator_escalations_total", {"reason": "circuit_open"}) == 0


def test_decisions_move_once() -> None:
    request = ApprovalRequest(
        id="r1",
        rule="restart",
        subject="web.down",
        payload={},
        headers={},
        event_id="e",
        trace_id="t",
        steps=(),
        created_at=0.0,
        expires_at=100.0,
    )
    approved = decide(request, "approved", "bob", "ok", now=10.0)
    assert approved.approval() == {
        "id": "r1",
        "decision": "approved",
        "by": "bob",
        "at": "1970-01-01T00:00:10+00:00",
    }
    with pytest.raises(AlreadyDecided, match="already decided by bob"):
        decide(approved, "denied", "eve", "", now=11.0)
    assert decide(request, "approved", "bob", "", now=200.0).state == "expired"


def test_test_and_explain_say_the_rule_would_ask(
    rule_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = tmp_path / "rules.cases.yaml"
    cases.write_text(
        """
cases:
  - name: web down asks
    subject: web.down
    event: {host: w1}
    expect:
      fired: [restart]
      steps: {restart: {http-0: {url: "http://restarter/w1"}}}
"""
    )
    assert main(["test", str(rule_file), "--cases", str(cases)]) == 0
    tested = capsys.readouterr().out
    assert "PASS" in tested and "rule restart: would ask for approval; nothing runs" in tested
    assert main(["explain", str(rule_file), "web.down", '{"host": "w1"}']) == 0
    assert "would ask for approval first" in capsys.readouterr().out


async def test_replay_counts_the_rule_as_asked(rule_file: Path) -> None:
    secrets = offline_secrets({}, {})
    engine = offline_engine(offline_rules([rule_file], secrets), secrets, simulate=True)
    event = Event(
        subject="web.down", headers={}, payload={"host": "w1"}, event_id="e", trace_id="t"
    )
    (result,) = await engine.process(event)
    assert result.status == "awaiting_approval" and outcome(result) == "asked"
    assert [s.status for s in result.steps] == ["dry_run"]


def test_unknown_rule_names_are_refused_with_the_closest_known_one() -> None:
    known = {"restart-web", "scale-out-web", "disk-full"}
    check_rule_names(["restart-web", "disk-full"], known)
    with pytest.raises(ScopeError) as refused:
        check_rule_names(["restart-wbe", "zzz", "restart-wbe"], known)
    assert str(refused.value) == (
        "unknown rule 'restart-wbe' (did you mean 'restart-web'?); unknown rule 'zzz'"
    )


def test_resume_targets_are_named_in_words() -> None:
    assert [t.what for t in resume_targets([], True, None)] == ["all rules"]
    (one,) = resume_targets(["fix"], False, "host-a")
    assert one.what == "rule fix for key 'host-a'" and one.name.startswith("pause.key.fix.")


class Calls:
    """An http action that records what it was asked to send (our Action seam)."""

    def __init__(self) -> None:
        self.urls: list[object] = []

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        self.urls.append(request["url"])
        return {"status": 200}

    async def close(self) -> None:
        pass


class Desk:
    """Files requests in a list (our ApprovalDesk seam)."""

    def __init__(self) -> None:
        self.opened: list[ApprovalRequest] = []

    async def open(self, request: ApprovalRequest) -> ApprovalRequest:
        self.opened.append(request)
        return request


async def test_an_approval_whose_steps_do_not_render_asks_no_one(tmp_path: Path) -> None:
    """A template typo used to be filed as a request anyway: approving it ran a step
    certain to fail (issue 22 c). The rule reports `failed`; nobody is asked."""
    path = tmp_path / "typo.yaml"
    path.write_text(
        """
rules:
  - name: restart
    on: [web.down]
    approval:
      timeout: 10m
      notify:
        - http: {url: "http://chat/hook"}
    actions:
      - http: {url: "http://restarter/{{ event.hots }}"}
"""
    )
    secrets = offline_secrets({}, {})
    calls, desk = Calls(), Desk()
    engine = Engine.build(
        RuleIndex(offline_rules([path], secrets)), {"http": calls}, secrets, desk=desk
    )
    event = Event(
        subject="web.down", headers={}, payload={"host": "w1"}, event_id="e", trace_id="t"
    )
    (result,) = await engine.process(event)
    assert result.status == "failed"
    assert "hots" in str(result.reason) and "nobody was asked" in str(result.reason)
    assert [s.status for s in result.steps] == ["failed"]
    assert desk.opened == [] and calls.urls == []


async def test_a_when_over_an_earlier_result_still_asks(tmp_path: Path) -> None:
    """Such a `when` cannot be decided in the preview; it must not pass for a typo."""
    path = tmp_path / "checked.yaml"
    path.write_text(
        """
rules:
  - name: restart
    on: [web.down]
    approval: {timeout: 10m}
    actions:
      - name: errors
        http: {url: "http://prometheus/q"}
      - name: restart
        when: "results.errors.status is not none and results.errors.status + 1 > 200"
        http: {url: "http://restarter/{{ event.host }}"}
"""
    )
    secrets = offline_secrets({}, {})
    desk = Desk()
    engine = Engine.build(
        RuleIndex(offline_rules([path], secrets)), {"http": Calls()}, secrets, desk=desk
    )
    event = Event(
        subject="web.down", headers={}, payload={"host": "w1"}, event_id="e", trace_id="t"
    )
    (result,) = await engine.process(event)
    assert result.status == "awaiting_approval"
    (request,) = desk.opened
    assert [s["output"]["url"] for s in request.steps] == [  # type: ignore[index]
        "http://prometheus/q",
        "http://restarter/w1",
    ]


async def test_a_decision_after_the_expiry_is_refused_however_far_the_request_got(
    nc: Client, unique: str
) -> None:
    """Pending past its expiry (no replica noticed yet) or already marked expired: both
    answer AlreadyDecided ("expired ... nothing runs": the API's 409, the CLI's exit 1)."""
    kv = await nc.jetstream().create_key_value(KeyValueConfig(bucket=f"C{unique}", history=1))
    now = [1000.0]
    control = Control(kv, clock=lambda: now[0])
    late = ApprovalRequest(
        id=f"late{unique}",
        rule="restart",
        subject="web.down",
        payload={},
        headers={},
        event_id="e",
        trace_id="t",
        steps=(),
        created_at=0.0,
        expires_at=100.0,
    )
    await control.create(late)
    for decision in ("approved", "denied"):  # the first stores the expiry, the second reads it
        with pytest.raises(AlreadyDecided, match=r"expired \(no decision before .*nothing runs"):
            await control.decide(late.id, decision, "kim")
    stored, _revision = await control.request(late.id)
    assert stored.state == "expired" and stored.decided_by == "timeout"


def test_a_request_keeps_a_big_event_by_reference_and_memory_keeps_no_event() -> None:
    delivery = Delivery(stream="ALERTS", sequence=42, num_delivered=1)
    now = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)

    def asked(payload: dict[str, object]) -> ApprovalRequest:
        event = Event(
            subject="a.b",
            headers={"h": "v"},
            payload=payload,
            event_id="e",
            trace_id="t",
            delivery=delivery,
        )
        return ApprovalRequest.ask("r", event, (), now, 60.0, rule_digest="d", throttle_key="k")

    small, big = asked({"host": "a"}), asked({"host": "a", "log": "x" * (EVENT_CAP + 1)})
    assert small.payload == {"host": "a"} and small.origin is None
    assert big.payload == {} and big.origin == ("ALERTS", 42)
    assert ApprovalRequest.decode(big.encode()) == big
    assert len(big.encode()) < 2048
    assert (small.rule_digest, small.throttle_key) == ("d", "k")
    assert small.slim().payload == {} and small.slim().headers == {}
