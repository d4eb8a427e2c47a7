"""Ordering keys and the per-key queue (SPEC §5), and the default `verify.key` (SPEC §2)."""

from __future__ import annotations

import asyncio

import pytest

from remediator.engine.ordering import KeyedQueue, OrderKey
from remediator.engine.rulecontext import verify_key
from remediator.errors import ConfigError
from remediator.model import Event, Rule, Source, Verify
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates

TEMPLATES = Templates(Secrets({}))


def event(payload: dict[str, object], subject: str = "alerts.HighCPU") -> Event:
    return Event(subject=subject, headers={}, payload=payload, event_id="e-1", trace_id="t")


def context(e: Event) -> dict[str, object]:
    return {"event": e.payload, "subject": e.subject, "event_id": e.event_id}


def test_default_key_is_the_fingerprint_else_the_subject() -> None:
    key = OrderKey.compile(None, TEMPLATES)
    assert key.of(event({"fingerprint": "abc"}), context) != key.of(event({}), context)
    assert key.of(event({"fingerprint": "abc"}), context) == key.of(
        event({"fingerprint": "abc", "status": "resolved"}, "other.subject"), context
    )
    assert key.of(event({}), context) == key.of(event({"x": 1}), context)
    assert key.of(event({}), context) != key.of(event({}, "other.subject"), context)


def test_none_turns_ordering_off() -> None:
    assert OrderKey.compile("none", TEMPLATES).of(event({"fingerprint": "a"}), context) is None


def test_a_template_is_rendered_over_the_event_context() -> None:
    key = OrderKey.compile("{{ event.labels.host }}", TEMPLATES)
    h1 = key.of(event({"labels": {"host": "h1"}, "fingerprint": "a"}), context)
    assert h1 == key.of(event({"labels": {"host": "h1"}, "fingerprint": "b"}), context)
    assert h1 != key.of(event({"labels": {"host": "h2"}, "fingerprint": "a"}), context)
    # An event the template does not fit is ordered by its subject, not dropped.
    assert key.of(event({}), context) == OrderKey.compile(None, TEMPLATES).of(event({}), context)


def test_a_broken_template_is_a_start_up_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="order_key"):
        OrderKey.compile("{{ event.labels.host ", TEMPLATES)


async def test_the_queue_runs_one_key_in_order_and_others_beside_it() -> None:
    queue = KeyedQueue()
    log: list[str] = []
    gate = asyncio.Event()

    async def step(name: str, previous: asyncio.Task[None] | None, wait: bool) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        if wait:
            await gate.wait()
        log.append(name)

    def start(key: str | None, name: str, wait: bool = False) -> asyncio.Task[None]:
        return queue.start(key, lambda prev: asyncio.create_task(step(name, prev, wait)))

    start("a", "a1", wait=True)
    start("a", "a2")
    start("b", "b1")
    start(None, "n1")
    other = start("b", "b2")
    await other
    assert log == ["b1", "n1", "b2"]  # b and unkeyed work went by the hung a1
    assert queue.keys == 1 and len(queue) == 2
    gate.set()
    await asyncio.gather(*queue.tasks())
    assert log == ["b1", "n1", "b2", "a1", "a2"]
    assert queue.keys == 0 and len(queue) == 0, "nothing is kept once a key is idle"


def rule_with_verify(key: str | None) -> Rule:
    compiled = TEMPLATES.compile(key, rule="r", field="verify.key") if key else None
    return Rule(
        name="r",
        subjects=("a",),
        verify=Verify(resolved_within=60.0, key=compiled, escalate="x"),
        source=Source(file="t.yaml", line=1),
    )


def test_verify_key_defaults_to_the_fingerprint_else_the_event_id() -> None:
    rule = rule_with_verify(None)
    assert verify_key(rule, {"event": {"fingerprint": "fp"}, "event_id": "e-1"}) == "fp"
    assert verify_key(rule, {"event": {}, "event_id": "e-1"}) == "e-1"
    given = rule_with_verify("{{ event.labels.x }}")
    assert verify_key(given, {"event": {"fingerprint": "fp", "labels": {"x": 7}}}) == "7"
