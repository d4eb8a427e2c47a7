"""The daemon's result log: recent results, per-minute counts, seeding, with a fake clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping

from remediator.engine.resultlog import ResultLog
from remediator.offline.history_view import duration, relative, table

T0 = 1_800_000_000.0  # a whole minute


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def body(event: str, rule: str, status: str, at: float) -> dict[str, object]:
    finished = dt.datetime.fromtimestamp(at, dt.UTC).isoformat()
    return {"event_id": event, "rule": rule, "status": status, "finished_at": finished}


async def stream(*bodies: Mapping[str, object]) -> AsyncIterator[Mapping[str, object]]:
    for b in bodies:
        yield b


def test_recent_filters_newest_first_and_counts_once_per_event_and_rule() -> None:
    clock = Clock()
    log = ResultLog(clock)
    log.add(body("e1", "a", "succeeded", T0))
    log.add(body("e2", "a", "throttled", T0 + 1))
    log.add(body("e2", "b", "failed", T0 + 2))
    log.add(body("e2", "b", "failed", T0 + 2))  # republished from its completion record
    assert [b["event_id"] for b in log.recent(rule="a")] == ["e2", "e1"]
    assert [b["rule"] for b in log.recent(status="failed")] == ["b"]
    assert len(log.recent(limit=2)) == 2
    assert [b["rule"] for b in log.event("e2")] == ["a", "b"]
    assert log.counts(60) == {"a": {"succeeded": 1, "throttled": 1}, "b": {"failed": 1}}
    assert log.last()["a"]["event_id"] == "e2"


def test_counts_by_window_and_per_minute_series() -> None:
    clock = Clock()
    log = ResultLog(clock)
    log.add(body("old", "a", "failed", T0))
    clock.now = T0 + 2 * 3600  # two hours later
    log.add(body("new", "a", "succeeded", clock.now + 10))
    assert log.counts(60) == {"a": {"succeeded": 1}}
    assert log.counts(24 * 60) == {"a": {"failed": 1, "succeeded": 1}}
    series = log.per_minute()
    assert len(series) == 60
    assert series[-1][0] == T0 + 2 * 3600
    assert series[-1][1] == {"succeeded": 1}
    clock.now = T0 + 25 * 3600  # the first result leaves the day
    log.add(body("later", "a", "succeeded", clock.now))
    assert log.counts(24 * 60) == {"a": {"succeeded": 2}}


def test_ring_is_bounded_and_counts_outlive_it() -> None:
    log = ResultLog(Clock(), size=3)
    for i in range(5):
        log.add(body(f"e{i}", "a", "succeeded", T0 + i))
    assert len(log) == 3
    assert [b["event_id"] for b in log.recent()] == ["e4", "e3", "e2"]
    assert log.counts(60) == {"a": {"succeeded": 5}}


async def test_seed_merges_with_results_added_meanwhile() -> None:
    clock = Clock()
    clock.now = T0 + 120
    log = ResultLog(clock)
    log.add(body("live", "a", "succeeded", T0 + 100))
    count = await log.seed(
        stream(
            body("past", "a", "failed", T0 + 10),
            body("live", "a", "succeeded", T0 + 100),  # already known: counted once
        )
    )
    assert count == 2
    assert [b["event_id"] for b in log.recent()] == ["live", "past"]
    assert log.counts(60) == {"a": {"succeeded": 1, "failed": 1}}


def test_history_table_and_relative_times() -> None:
    assert relative(T0 - 5, T0) == "5s ago"
    assert relative(T0 - 190, T0) == "3m ago"
    assert relative(T0 - 7300, T0) == "2h ago"
    assert relative(T0 - 3 * 86400, T0) == "3d ago"
    assert duration(850) == "850ms" and duration(3210) == "3.2s" and duration(125_000) == "2m05s"
    rows = table(
        [
            {**body("e1", "restart", "failed", T0 - 60), "duration_ms": 12, "reason": "x  y"},
            body("e2", "page", "succeeded", T0 - 1),
        ],
        T0,
    ).splitlines()
    assert rows[0].split() == ["TIME", "RULE", "STATUS", "EVENT", "DURATION", "REASON"]
    assert rows[1].split() == ["1m", "ago", "restart", "failed", "e1", "12ms", "x", "y"]
    assert rows[2].split() == ["1s", "ago", "page", "succeeded", "e2", "-"]


async def test_ring_is_bounded_by_bytes_too() -> None:
    """10,000 results of up to max_payload each would be gigabytes: bytes bound the ring."""
    big = "x" * 10_000
    log = ResultLog(Clock(), size=1000, max_bytes=50_000)
    for i in range(20):
        log.add(body(f"e{i}", "a", "succeeded", T0 + i) | {"reason": big})
    assert 3 <= len(log) <= 5 and log.recent()[0]["event_id"] == "e19"
    assert log.counts(60) == {"a": {"succeeded": 20}}
    seeded = ResultLog(Clock(), size=1000, max_bytes=50_000)
    count = await seeded.seed(
        stream(*(body(f"s{i}", "a", "failed", T0 + i) | {"reason": big} for i in range(20)))
    )
    assert count == 20 and 3 <= len(seeded) <= 5
    assert seeded.recent()[0]["event_id"] == "s19"


def test_results_of_other_replicas_arriving_late_are_kept_in_time_order() -> None:
    log = ResultLog(Clock())
    log.add(body("e1", "a", "succeeded", T0))
    log.add(body("e3", "a", "succeeded", T0 + 3))
    log.add(body("e2", "b", "succeeded", T0 + 2))  # another replica's, a moment late
    assert [b["event_id"] for b in log.recent()] == ["e3", "e2", "e1"]
    # `since` stops at the first older one: the late one must not be cut off
    assert [b["event_id"] for b in log.recent(since=T0 + 1)] == ["e3", "e2"]


def test_pages_and_filters_by_time_range_and_text() -> None:
    clock = Clock()
    log = ResultLog(clock)
    for n in range(10):
        entry = body(f"e{n}", "restart-nginx", "succeeded", T0 + n)
        entry["subject"] = f"alerts.web.web-{n:02d}"
        log.add(entry)
    failed = body("e10", "clean-tmp", "failed", T0 + 10)
    failed["steps"] = [{"name": "clean", "error": "connection refused"}]
    log.add(failed)
    assert [b["event_id"] for b in log.recent(offset=1, limit=3)] == ["e9", "e8", "e7"]
    assert [b["event_id"] for b in log.recent(offset=10, limit=3)] == ["e0"]
    assert [b["event_id"] for b in log.recent(since=T0 + 2, until=T0 + 4)] == ["e4", "e3", "e2"]
    assert [b["event_id"] for b in log.recent(text="WEB-07")] == ["e7"]
    assert [b["event_id"] for b in log.recent(text="refused")] == ["e10"]
    assert log.recent(text="refused", rule="restart-nginx") == []
