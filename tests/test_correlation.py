"""Correlation windows and absence timers, on the in-memory store with a fake clock.

Several engines sharing one store stand for replicas; a store that yields on every
call lets their compare-and-set writes interleave.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

from remediator.engine.correlation import CLAIM_LEASE
from remediator.engine.engine import Engine
from remediator.engine.guards import Guards
from remediator.engine.reach import PROBE_KEY
from remediator.engine.state import Entry, MemoryStore
from remediator.model import Delivery, Event
from remediator.rules.loader import load_rules
from remediator.rules.matching import RuleIndex
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates
from tests.test_guards import Clock, Recorder

CORRELATE = """
rules:
  - name: pool
    on: [pool.alert]
    correlate: {count: 3, within: 5m, group_by: "{{ event.pool }}"}
    actions:
      - http:
          url: "http://x/{{ event.pool }}"
          json: {hosts: "{{ correlated | map(attribute='host') | list }}"}
  - name: plain
    on: [other.alert]
    actions: [{http: {url: "http://x/plain"}}]
"""

ABSENT = """
rules:
  - name: backup-silent
    on: [backup.done]
    absent: {within: 25h, group_by: "{{ event.job }}"}
    actions:
      - http: {url: "http://x/{{ event.job }}", json: {silent: "{{ silent_for }}"}}
"""


class YieldingStore(MemoryStore):
    """Lets other tasks run inside every read, as a network store does."""

    async def get(self, key: str) -> Entry | None:
        entry = await MemoryStore.get(self, key)
        await asyncio.sleep(0)
        return entry


def replicas(
    tmp_path: Path, text: str, n: int = 1, store: MemoryStore | None = None
) -> tuple[list[Engine], Recorder, Clock, MemoryStore]:
    (tmp_path / "r.yaml").write_text(text)
    secrets = Secrets({})
    rules = load_rules([tmp_path / "r.yaml"], Templates(secrets))
    recorder, clock, shared = Recorder(), Clock(), store or MemoryStore()
    engines = []
    for _ in range(n):
        guards = Guards(store=shared, verifications=MemoryStore(), publisher=recorder, clock=clock)
        engine = Engine.build(RuleIndex(rules), {"http": recorder}, secrets, guards=guards)
        engine.now = lambda: dt.datetime.fromtimestamp(clock.now, dt.UTC)
        engines.append(engine)
    return engines, recorder, clock, shared


def alert(n: int, pool: str = "p1", subject: str = "pool.alert", delivered: int = 1) -> Event:
    delivery = Delivery(stream="S", sequence=n, num_delivered=delivered)
    payload = {"pool": pool, "host": f"h{n}", "job": pool}
    return Event(
        subject=subject,
        headers={},
        payload=payload,
        event_id=f"e{n}",
        trace_id="t",
        delivery=delivery,
    )


async def test_the_third_event_in_the_window_fires_with_the_group_oldest_first(
    tmp_path: Path,
) -> None:
    (engine,), recorder, clock, _ = replicas(tmp_path, CORRELATE)
    assert await engine.process(alert(1)) == []
    clock.now += 60
    assert await engine.process(alert(2)) == []
    clock.now += 60
    (result,) = await engine.process(alert(3))
    assert result.status == "succeeded" and result.event_id == "e3"
    assert recorder.runs[0]["json"] == {"hosts": ["h1", "h2", "h3"]}
    # the group starts afresh: the fourth event is 1 of 3
    assert await engine.process(alert(4)) == []
    assert len(recorder.runs) == 1


async def test_events_that_left_the_window_do_not_count(tmp_path: Path) -> None:
    (engine,), recorder, clock, _ = replicas(tmp_path, CORRELATE)
    await engine.process(alert(1))
    clock.now += 301
    await engine.process(alert(2))
    await engine.process(alert(3))
    assert recorder.runs == []
    await engine.process(alert(4))
    assert recorder.runs[0]["json"] == {"hosts": ["h2", "h3", "h4"]}


async def test_groups_count_apart(tmp_path: Path) -> None:
    (engine,), recorder, _, _ = replicas(tmp_path, CORRELATE)
    for n in range(1, 3):
        await engine.process(alert(n, "a"))
        await engine.process(alert(10 + n, "b"))
    assert recorder.runs == []
    await engine.process(alert(3, "b"))
    assert [r["url"] for r in recorder.runs] == ["http://x/b"]


async def test_three_replicas_racing_fire_once_per_window(tmp_path: Path) -> None:
    engines, recorder, _, _ = replicas(tmp_path, CORRELATE, n=3, store=YieldingStore())
    batch = [engines[n % 3].process(alert(n)) for n in range(6)]
    results = [r for found in await asyncio.gather(*batch) for r in found]
    assert len(results) == 2  # six events, count 3: two windows, each fired once
    hosts = sorted(h for run in recorder.runs for h in run["json"]["hosts"])  # type: ignore[index, union-attr]
    assert hosts == [f"h{n}" for n in range(6)]


async def test_a_redelivered_event_is_not_counted_twice_and_its_firing_repeats(
    tmp_path: Path,
) -> None:
    (engine,), recorder, _, _ = replicas(tmp_path, CORRELATE)
    await engine.process(alert(1))
    await engine.process(alert(1, delivered=2))
    await engine.process(alert(2))
    assert recorder.runs == []
    (first,) = await engine.process(alert(3))
    (again,) = await engine.process(alert(3, delivered=2))
    assert again.to_json() == first.to_json()  # the completion record answers; nothing reruns
    assert len(recorder.runs) == 1


async def test_throttle_applies_to_a_correlated_firing(tmp_path: Path) -> None:
    throttled = CORRELATE.replace(
        "    actions:\n", "    throttle: {cooldown: 1h}\n    actions:\n", 1
    )
    (engine,), recorder, _, _ = replicas(tmp_path, throttled)
    statuses = [r.status for n in range(6) for r in await engine.process(alert(n))]
    assert statuses == ["succeeded", "throttled"]
    assert len(recorder.runs) == 1


async def test_state_per_group_is_bounded_and_expired_groups_are_removed(tmp_path: Path) -> None:
    (engine,), _, clock, store = replicas(tmp_path, CORRELATE)
    for n in range(5):
        await engine.process(alert(n))
    (key,) = await store.keys("corr")
    entry = await store.get(key)
    assert entry is not None
    state = json.loads(entry.value)
    assert len(state["events"]) <= 2 and len(state["fired"]["correlated"]) == 3
    assert await engine.clean_windows() == 0
    clock.now += 3600
    assert await engine.clean_windows() == 1
    assert await store.keys("corr") == []


class CountingStore(MemoryStore):
    """Records every read and write by key."""

    calls: list[str]

    async def get(self, key: str) -> Entry | None:
        self.calls.append(f"get {key}")
        return await MemoryStore.get(self, key)

    async def put(self, key: str, value: bytes) -> int:
        self.calls.append(f"put {key}")
        return await MemoryStore.put(self, key, value)


async def test_an_event_no_windowed_rule_matches_pays_nothing(tmp_path: Path) -> None:
    store = CountingStore()
    store.calls = []
    (engine,), _, _, _ = replicas(tmp_path, CORRELATE, store=store)
    (result,) = await engine.process(alert(1, subject="other.alert"))
    assert result.status == "succeeded"
    # the reachability probe and the completion record of the plain rule; nothing for correlation
    assert [c.split(".")[0] for c in store.calls] == [f"put {PROBE_KEY}", "put done"]


async def test_absence_fires_once_after_the_silence_with_the_last_event(tmp_path: Path) -> None:
    engines, recorder, clock, _ = replicas(tmp_path, ABSENT, n=2, store=YieldingStore())
    await engines[0].process(alert(1, "nightly", subject="backup.done"))
    clock.now += 3600
    assert await engines[1].process(alert(2, "nightly", subject="backup.done")) == []
    clock.now += 25 * 3600 - 1
    assert await engines[0].sweep() == []
    clock.now += 2
    found = await asyncio.gather(*(engine.sweep() for engine in engines))
    (result,) = [r for results in found for r in results]
    assert result.event_id == "e2" and result.status == "succeeded"
    assert recorder.runs[0]["json"] == {"silent": 25 * 3600 + 1}
    clock.now += 3600
    assert await engines[0].sweep() == []  # it waits for the group's next event


async def test_a_claim_whose_replica_died_is_taken_over(tmp_path: Path) -> None:
    (engine,), _, clock, _ = replicas(tmp_path, ABSENT)
    await engine.process(alert(1, "nightly", subject="backup.done"))
    clock.now += 26 * 3600
    (firing,) = await engine.windows.due({"backup-silent": engine.index.rules[0]}, clock.now)
    # ...and the claimer died before firing: nobody else fires until its lease ran out
    assert await engine.sweep() == []
    clock.now += CLAIM_LEASE + 1
    (result,) = await engine.sweep()
    assert result.event_id == firing.event.event_id


async def test_alike_first_deliveries_each_count(tmp_path: Path) -> None:
    """Core mode: equal payloads without a message id share an event id, yet are three events."""
    (engine,), recorder, _, _ = replicas(tmp_path, CORRELATE)
    same = Event(
        subject="pool.alert",
        headers={},
        payload={"pool": "p", "host": "h"},
        event_id="same",
        trace_id="t",
    )
    fired = [r for _ in range(3) for r in await engine.process(same)]
    assert len(fired) == 1 and len(recorder.runs) == 1


class KeysCountingStore(CountingStore):
    async def keys(self, under: str | None = None) -> list[str]:
        self.calls.append(f"keys {under}")
        return await MemoryStore.keys(self, under)


async def test_idle_sweeps_read_nothing_and_due_timers_still_fire(tmp_path: Path) -> None:
    """5,000 absent groups made an idle daemon use half a core: every sweep read every
    timer. Now a sweep reads only timers whose known deadline passed, and every key once
    a minute (for timers another replica wrote and then died)."""
    store = KeysCountingStore()
    store.calls = []
    (engine, other), recorder, clock, _ = replicas(tmp_path, ABSENT, n=2, store=store)
    for n in range(200):
        await engine.process(alert(n, f"job{n}", subject="backup.done"))
    assert await engine.sweep() == []  # the first sweep reads every key once
    store.calls.clear()
    for _ in range(50):  # idle: 50 sweeps, a second apart, within the rescan interval
        clock.now += 1
        assert await engine.sweep() == []
    assert store.calls == []
    clock.now += 25 * 3600
    fired = await engine.sweep()
    assert len(fired) == 200 and {r.status for r in fired} == {"succeeded"}
    # a timer only the other replica wrote: found at this replica's next full read
    await other.process(alert(900, "lonely", subject="backup.done"))
    clock.now += 26 * 3600
    (late,) = await engine.sweep()
    assert late.event_id == "e900" and len(recorder.runs) == 201
