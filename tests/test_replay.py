"""Replay's evaluation, fed stored messages directly: the stored time is the clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

from remediator.engine.guards import Budget
from remediator.nats.history import Stored
from remediator.offline.replay import Replayer, diff, replay
from remediator.offline.sandbox import offline_rules, offline_secrets

RULES = """
rules:
  - name: cool
    on: [disk.full]
    throttle: {key: "{{ event.host }}", cooldown: 5m}
    actions:
      - http: {url: "https://example.invalid/{{ event.host }}"}
  - name: rehearsal
    on: [disk.full]
    dry_run: true
    actions:
      - publish: {subject: x, json: {token: "{{ secret('TOKEN') }}"}}
  - name: verified
    on: [disk.full]
    match: {host: v}
    throttle: {max_runs: 5, window: 1h}
    verify: {resolved_within: 10m, key: "{{ event.host }}"}
    actions:
      - publish: {subject: y, json: {}}
"""


def replayer(tmp_path: Path, budget: Budget | None = None) -> Replayer:
    (tmp_path / "r.yaml").write_text(RULES)
    secrets = offline_secrets({}, {})
    return Replayer.build(offline_rules([tmp_path / "r.yaml"], secrets), secrets, budget)


def stored(sequence: int, time: float, payload: object, subject: str = "disk.full") -> Stored:
    data = json.dumps(payload).encode()
    return Stored(stream="S", sequence=sequence, subject=subject, headers={}, data=data, time=time)


async def feed(target: Replayer, *messages: Stored) -> None:
    async def history() -> AsyncIterator[Stored]:
        for message in messages:
            yield message

    await replay(history(), "S", target)


async def test_cooldowns_run_on_the_stored_time(tmp_path: Path) -> None:
    target = replayer(tmp_path)
    start = 1_700_000_000.0
    await feed(
        target,
        stored(1, start, {"host": "a"}),
        stored(2, start + 60, {"host": "a"}),  # inside the 5m cooldown
        stored(3, start + 400, {"host": "a"}),  # after it
        stored(4, start + 401, {"host": "b"}),
    )
    assert target.counts["cool"] == {
        "ran": 3,
        "throttled": 1,
        "suppressed": 0,
        "failed": 0,
        "asked": 0,
        "undecided": 0,
    }
    # A rule that is a dry run itself still "runs" (renders) every time.
    assert target.counts["rehearsal"]["ran"] == 4


async def test_the_budget_is_spent_by_real_runs_only(tmp_path: Path) -> None:
    target = replayer(tmp_path, Budget(max_runs=2, window=3600))
    await feed(target, *(stored(i, 1000.0 + i, {"host": f"h{i}"}) for i in range(1, 5)))
    assert target.counts["cool"] == {
        "ran": 2,
        "throttled": 0,
        "suppressed": 2,
        "failed": 0,
        "asked": 0,
        "undecided": 0,
    }
    assert target.counts["rehearsal"] == {
        "ran": 4,
        "throttled": 0,
        "suppressed": 0,
        "failed": 0,
        "asked": 0,
        "undecided": 0,
    }
    assert target.escalations.counts == {"budget_exhausted": 1}


async def test_unverified_runs_escalate_when_their_deadline_passes(tmp_path: Path) -> None:
    target = replayer(tmp_path)
    resolved = {"host": "v", "status": "resolved"}
    await feed(
        target,
        stored(1, 1000.0, {"host": "v"}),
        stored(2, 1100.0, resolved),  # in time: verified
        stored(3, 2000.0, {"host": "v"}),
        stored(4, 2000.0 + 601, {"host": "other"}),  # the deadline passed unresolved
    )
    assert target.escalations.counts == {"verified": 1, "not_resolved": 1}
    assert target.counts["verified"]["ran"] == 2


async def test_undecodable_messages_are_counted_apart(tmp_path: Path) -> None:
    target = replayer(tmp_path)
    poison = Stored(stream="S", sequence=1, subject="disk.full", headers={}, data=b"[1]", time=1.0)
    report = await replay(_once(poison), "S", target)
    assert (report.events, report.undecodable) == (0, 1)
    assert all(sum(counts.values()) == 0 for counts in target.counts.values())


async def _once(message: Stored) -> AsyncIterator[Stored]:
    yield message


def test_diff_marks_rules_only_in_one_set() -> None:
    old = {
        "a": {"ran": 1, "throttled": 0, "suppressed": 0, "failed": 0, "asked": 0, "undecided": 0}
    }
    new = {
        "b": {"ran": 2, "throttled": 1, "suppressed": 0, "failed": 0, "asked": 0, "undecided": 0}
    }
    rows = diff(old, new)
    assert rows["b"] == {"old": None, "new": new["b"], "delta": new["b"]}
    assert rows["a"]["new"] is None
    assert rows["a"]["delta"] == {
        "ran": -1,
        "throttled": 0,
        "suppressed": 0,
        "failed": 0,
        "asked": 0,
        "undecided": 0,
    }
