"""The state-store writes a fired rule makes (issue 25 b): no write a guarantee does not
need. The probe that proves the store takes writes before any step runs is left out
when the rule's first act is a write anyway (its throttle reservation), and that write
failing still runs nothing. The completion record and the result go out together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from remediator.engine.engine import Engine
from remediator.engine.guards import Guards
from remediator.engine.reach import PROBE_KEY
from remediator.engine.state import Entry, MemoryStore
from remediator.errors import TransportError
from remediator.model import Delivery, Event, Result
from remediator.rules.loader import load_rules
from remediator.rules.matching import RuleIndex
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates
from tests.test_guards import Recorder

RULES = """
rules:
  - name: plain
    on: [plain.alert]
    actions: [{http: {url: "http://x/plain"}}]
  - name: throttled
    on: [throttled.alert]
    throttle: {key: "{{ event.host }}", cooldown: 5m}
    actions: [{http: {url: "http://x/throttled"}}]
"""


class Writes(MemoryStore):
    """Records every write by key; refuses them all while `down`."""

    calls: list[str]
    down: bool = False

    def _write(self, what: str, key: str) -> None:
        self.calls.append(f"{what} {key.split('.')[0]}")
        if self.down:
            raise TransportError("state store: no leader")

    async def get(self, key: str) -> Entry | None:
        self.calls.append(f"get {key.split('.')[0]}")
        return await MemoryStore.get(self, key)

    async def create(self, key: str, value: bytes) -> int:
        self._write("create", key)
        return await MemoryStore.create(self, key, value)

    async def put(self, key: str, value: bytes) -> int:
        self._write("put", key)
        return await MemoryStore.put(self, key, value)


def engine(tmp_path: Path, store: Writes, reported: list[Result]) -> tuple[Engine, Recorder]:
    (tmp_path / "r.yaml").write_text(RULES)
    secrets = Secrets({})
    rules = load_rules([tmp_path / "r.yaml"], Templates(secrets))
    recorder = Recorder()
    guards = Guards(store=store, verifications=MemoryStore(), publisher=recorder)

    async def report(result: Result, body: bytes) -> None:
        reported.append(result)

    built = Engine.build(RuleIndex(rules), {"http": recorder}, secrets, guards=guards)
    built.report = report
    return built, recorder


def alert(subject: str) -> Event:
    return Event(
        subject=subject,
        headers={},
        payload={"host": "web-1"},
        event_id=f"{subject}:1",
        trace_id="t",
        delivery=Delivery(stream="S", sequence=1, num_delivered=1),
    )


async def test_a_plain_rule_proves_the_store_writable_before_its_step(tmp_path: Path) -> None:
    store, reported = Writes(), []
    store.calls = []
    built, _ = engine(tmp_path, store, reported)
    (result,) = await built.process(alert("plain.alert"))
    assert result.status == "succeeded"
    assert store.calls == [f"put {PROBE_KEY}", "put done"]


async def test_a_throttled_rule_needs_no_probe_its_reservation_is_the_first_write(
    tmp_path: Path,
) -> None:
    store, reported = Writes(), []
    store.calls = []
    built, _ = engine(tmp_path, store, reported)
    (result,) = await built.process(alert("throttled.alert"))
    assert result.status == "succeeded"
    assert f"put {PROBE_KEY}" not in store.calls
    assert store.calls[:2] == ["get throttle", "create throttle"]


async def test_a_store_that_takes_no_writes_runs_no_throttled_step(tmp_path: Path) -> None:
    store, reported = Writes(), []
    store.calls, store.down = [], True
    built, recorder = engine(tmp_path, store, reported)
    with pytest.raises(TransportError):
        await built.process(alert("throttled.alert"))
    assert recorder.runs == []
    assert reported == []


async def test_the_record_and_the_result_are_written_together(tmp_path: Path) -> None:
    """Both writes are under way before either is answered: one round trip, not two."""
    store, reported = Writes(), []
    store.calls = []
    built, _ = engine(tmp_path, store, reported)
    both = asyncio.Event()
    started: list[str] = []
    plain_put = MemoryStore.put

    async def slow_put(key: str, value: bytes) -> int:
        if key.startswith("done."):
            started.append("record")
            await asyncio.wait_for(both.wait(), 5)
        return await plain_put(store, key, value)

    async def report(result: Result, body: bytes) -> None:
        started.append("result")
        both.set()
        reported.append(result)

    store.put = slow_put  # type: ignore[method-assign]
    built.report = report
    (result,) = await built.process(alert("plain.alert"))
    assert sorted(started) == ["record", "result"]
    assert reported == [result]
