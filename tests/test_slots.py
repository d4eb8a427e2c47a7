"""Concurrency per group (SPEC §17 b) over the in-memory store: slots per group, arrival
order, a dead holder's lease, `wait` then `throttled`; and the engine around them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry

from remediator.actions.base import StepContext
from remediator.engine.control import ApprovalRequest, decide
from remediator.engine.slots import Slots, Ticket
from remediator.engine.state import MemoryStore
from remediator.metrics import Metrics
from tests.test_guards import build, event


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def slots(store: MemoryStore | None = None) -> tuple[Slots, Clock]:
    clock = Clock()
    return Slots(store=store or MemoryStore(), clock=clock, sleep=clock.sleep), clock


async def test_at_most_max_per_group_and_waiters_start_in_arrival_order() -> None:
    pool, _ = slots()
    a = await pool.acquire("r", "c1", 2, 60)
    b = await pool.acquire("r", "c1", 2, 60)
    other = await pool.acquire("r", "c2", 2, 60)
    assert all(isinstance(t, Ticket) for t in (a, b, other))  # another group never waits
    started: list[str] = []

    async def wait(name: str) -> None:
        got = await pool.acquire("r", "c1", 2, 60)
        assert isinstance(got, Ticket)
        started.append(name)

    waiters = [asyncio.create_task(wait(n)) for n in ("third", "fourth", "fifth")]
    for _ in range(20):
        await asyncio.sleep(0)  # every waiter has joined the line and polled
    assert started == []
    assert isinstance(a, Ticket)
    await pool.release(a)
    await until_started(started, 1)
    assert isinstance(b, Ticket)
    await pool.release(b)
    await until_started(started, 2)
    assert started == ["third", "fourth"]
    for task in waiters:
        task.cancel()


async def until_started(started: list[str], count: int) -> None:
    for _ in range(200):
        if len(started) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"only {started} started")


async def test_waiting_past_wait_says_why_and_leaves_the_line() -> None:
    pool, _ = slots()
    await pool.acquire("r", "c1", 1, 60)
    refused = await pool.acquire("r", "c1", 1, 5)
    assert refused == "concurrency: 1 run(s) of group 'c1' in flight; waited 5s"
    (entry,) = pool.store.data.values()  # type: ignore[attr-defined]
    assert json.loads(entry.value)["queue"] == {}


async def test_a_dead_holders_slot_frees_within_its_lease() -> None:
    store = MemoryStore()
    dead, clock = slots(store)
    await dead.acquire("r", "c1", 1, 0)  # then its replica is killed: no renewal, no release
    alive = Slots(store=store, clock=clock, sleep=clock.sleep)
    got = await alive.acquire("r", "c1", 1, 60)
    assert isinstance(got, Ticket)
    assert clock.now - 1000.0 <= alive.lease + alive.poll


async def test_a_renewed_slot_is_kept_past_its_lease() -> None:
    pool, _ = slots()
    held = await pool.acquire("r", "c1", 1, 0)
    assert isinstance(held, Ticket)
    keeper = asyncio.create_task(pool.keep(held))
    refused = await pool.acquire("r", "c1", 1, 3 * pool.lease)  # the keeper renews meanwhile
    keeper.cancel()
    assert isinstance(refused, str)


RULE = """
rules:
  - name: restart
    on: [alerts.X]
    concurrency: {key: "{{ event.cluster }}", max: 2, wait: 1m}
    actions:
      - http: {url: "http://example.invalid/{{ event.node }}"}
"""


class Gate:
    """An action that holds every run until let go, counting runs in flight."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.running: list[str] = []
        self.most = 0

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        self.running.append(str(request["url"]))
        self.most = max(self.most, len(self.running))
        await self.open.wait()
        self.running.remove(str(request["url"]))
        return {}

    async def close(self) -> None:
        return None


async def test_the_engine_runs_at_most_max_per_group_and_throttles_past_wait(
    tmp_path: Path,
) -> None:
    engine, _, _ = build(tmp_path, RULE)
    gate = Gate()
    engine.runner.actions["http"] = gate  # type: ignore[index]
    clock = Clock()
    engine.metrics = Metrics(CollectorRegistry())
    engine.slots = Slots(
        store=MemoryStore(), clock=clock, sleep=clock.sleep, metrics=engine.metrics
    )
    runs = [
        asyncio.create_task(
            engine.process(event({"cluster": "c1", "node": f"n{i}"}, f"e{i}", "alerts.X"))
        )
        for i in range(3)
    ]
    other = asyncio.create_task(
        engine.process(event({"cluster": "c2", "node": "m"}, "o", "alerts.X"))
    )
    for _ in range(50):
        await asyncio.sleep(0)
    assert sorted(gate.running) == [f"http://example.invalid/{n}" for n in ("m", "n0", "n1")]
    sample = engine.metrics.registry.get_sample_value  # type: ignore[attr-defined]
    assert sample("remediator_concurrency_slots_in_use", {"rule": "restart"}) == 3
    (late,) = await runs[2]  # waited past `wait` while the first two held on
    assert late.status == "throttled" and "waited 60s" in str(late.reason)
    gate.open.set()
    for task in (*runs[:2], other):
        (result,) = await task
        assert result.status == "succeeded"
    assert gate.most == 3  # two of c1 and one of c2
    assert sample("remediator_concurrency_slots_in_use", {"rule": "restart"}) == 0
    assert sample("remediator_concurrency_waiting", {"rule": "restart"}) == 0


APPROVED_RULE = """
rules:
  - name: restart
    on: [alerts.X]
    approval: {}
    concurrency: {key: "{{ event.cluster }}", max: 1, wait: 30s}
    actions:
      - http: {url: "http://example.invalid/{{ event.node }}"}
"""


async def test_an_approved_run_takes_a_slot_of_its_group(tmp_path: Path) -> None:
    """A human's yes is no licence to pass the group's limit: with the group's one slot
    held, the approved run waits, then is throttled; once free, it runs in a slot."""
    engine, recorder, _ = build(tmp_path, APPROVED_RULE)
    clock = Clock()
    engine.slots = pool = Slots(store=MemoryStore(), clock=clock, sleep=clock.sleep)
    (rule,) = engine.index.rules
    request = ApprovalRequest(
        id="r1",
        rule="restart",
        subject="alerts.X",
        payload={"cluster": "c1", "node": "n1"},
        headers={},
        event_id="e1",
        trace_id="t",
        steps=(),
        created_at=0.0,
        expires_at=100.0,
    )
    approved = decide(request, "approved", "bob", "", now=10.0)
    held = await pool.acquire("other-run", "c1", 1, 0)  # another rule's group: no bearing
    busy = await pool.acquire("restart", "c1", 1, 0)
    assert isinstance(held, Ticket) and isinstance(busy, Ticket)
    keeper = asyncio.create_task(pool.keep(busy))  # a live holder, renewing its lease
    refused = await engine.run_approved(rule, approved)
    keeper.cancel()
    assert refused.status == "throttled" and "waited 30s" in str(refused.reason)
    assert refused.approval is not None and refused.approval["by"] == "bob"
    assert recorder.runs == []
    await pool.release(busy)
    done = await engine.run_approved(rule, approved)
    assert done.status == "succeeded" and len(recorder.runs) == 1
    assert await pool.acquire("restart", "c1", 1, 0) is not None  # given back after the run
