"""Replay: what a rule set would have done with the events a stream holds.

Each stored event goes through the real engine as the daemon would have run
it, except that steps are rendered, never run (`Engine.simulate`). Throttles,
the global budget (when given) and verification live in a fresh in-memory
store whose clock is the time the stream stored the event, so cooldowns and
windows behave as they did in real time; correlation windows and absence timers
(`correlate`, `absent`) live in that store too, on the same clock, and a silence
that ran out between two stored events fires before the later one. Escalations
and verification notices are recorded and counted, never published. A rule
that is `dry_run: true` spends no budget, as in the daemon.

Per rule it counts what each fired event would have come to: `ran` (admitted,
the daemon's `succeeded`), `throttled`, `suppressed` (budget), and `failed`
(a template error: the rule would fail). Whether an action itself would have
failed cannot be known offline. `--against` replays a second rule set over the
same events and shows the difference, a rule change reviewed against history.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field

from remediator.actions.prometheus import WOULD_ASK
from remediator.engine.engine import Engine
from remediator.engine.events import decode_event
from remediator.engine.guards import Budget, Guards
from remediator.engine.runner import UNKNOWN
from remediator.engine.state import MemoryStore
from remediator.errors import EventError
from remediator.model import Delivery, Result, Rule, StepResult
from remediator.nats import history
from remediator.nats.connection import connect
from remediator.nats.history import Span, Stored
from remediator.offline.sandbox import offline_engine
from remediator.rules.secrets import Secrets
from remediator.settings import Settings

# asked: would wait for a yes; undecided: a step's `when` hangs on a query's answer
COLUMNS = ("ran", "throttled", "suppressed", "failed", "asked", "undecided")
_SHOWN_QUERIES = 5  # distinct rendered queries listed per rule
Counts = dict[str, int]
DEFAULT_URL = "nats://127.0.0.1:4222"


@dataclass(slots=True)
class StoredClock:
    """The replay's clock: the time the stream stored the event being replayed."""

    at: float = 0.0

    def __call__(self) -> float:
        return self.at

    def datetime(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.at, dt.UTC)


@dataclass(slots=True)
class Escalations:
    """A Publisher that counts what the guards would have published, by reason."""

    counts: Counter[str] = field(default_factory=Counter)

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str]
    ) -> dict[str, object]:
        body = json.loads(data)
        reason = body.get("reason") if isinstance(body, dict) else None
        self.counts[str(reason or subject.split(".")[1])] += 1
        return {}


def outcome(result: Result) -> str:
    """The column a result counts in."""
    if result.status in ("throttled", "suppressed", "failed"):
        return result.status
    if result.status == "awaiting_approval":
        return "asked"  # a rule with `approval`: it would ask, and nothing would run yet
    if any(step.status == "failed" for step in result.steps):
        return "failed"
    return "undecided" if any(_said(step, UNKNOWN) for step in result.steps) else "ran"


def _said(step: StepResult, key: str) -> object:
    return step.output.get(key) if isinstance(step.output, Mapping) else None


@dataclass(slots=True)
class Replayer:
    """One rule set replaying a history: its own engine, store, clock and escalations."""

    rules: tuple[Rule, ...]
    engine: Engine
    guards: Guards
    clock: StoredClock
    escalations: Escalations
    counts: dict[str, Counts]
    # What each rule would have asked Prometheus (rendered), and how often.
    asked: dict[str, Counter[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, rules: Sequence[Rule], secrets: Secrets, budget: Budget | None) -> Replayer:
        clock, escalations = StoredClock(), Escalations()
        guards = Guards(
            store=MemoryStore(),
            verifications=MemoryStore(),
            publisher=escalations,
            budget=budget,
            clock=clock,
        )
        engine = offline_engine(rules, secrets, guards=guards, simulate=True, now=clock.datetime)
        counts = {rule.name: dict.fromkeys(COLUMNS, 0) for rule in rules}
        return cls(tuple(rules), engine, guards, clock, escalations, counts)

    async def feed(self, stored: Stored) -> bool:
        """Replay one stored message; False when it is not an event (the daemon dead-letters it)."""
        self.clock.at = stored.time
        await self.guards.expire({rule.name: rule for rule in self.rules})
        # Silences that ran out before this event fire now, as the daemon's sweep did.
        for result in await self.engine.sweep():
            self.counts[result.rule][outcome(result)] += 1
        delivery = Delivery(stream=stored.stream, sequence=stored.sequence, num_delivered=1)
        try:
            event = decode_event(
                stored.subject,
                stored.headers,
                stored.data,
                delivery,
                lambda: f"replay-{stored.sequence}",
            )
        except EventError:
            return False
        for result in await self.engine.process(event):
            self.counts[result.rule][outcome(result)] += 1
            for step in result.steps:
                if (query := _said(step, WOULD_ASK)) is not None:
                    self.asked.setdefault(result.rule, Counter())[str(query)] += 1
        return True

    def summary(self) -> dict[str, object]:
        asked = {rule: dict(queries) for rule, queries in self.asked.items()}
        return {
            "rules": self.counts,
            "escalations": dict(self.escalations.counts),
            "would_ask": asked,
        }


@dataclass(slots=True)
class Report:
    """What one replay saw and what each rule set made of it."""

    stream: str
    new: Replayer
    old: Replayer | None = None
    events: int = 0
    undecodable: int = 0
    first: Stored | None = None
    last: Stored | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "stream": self.stream,
            "events": self.events,
            "undecodable": self.undecodable,
            "first": _position(self.first),
            "last": _position(self.last),
            **self.new.summary(),
        }
        if self.old is not None:
            body["against"] = self.old.summary()
            body["diff"] = diff(self.old.counts, self.new.counts)
        return body


async def replay(
    history: AsyncIterable[Stored], stream: str, new: Replayer, old: Replayer | None = None
) -> Report:
    report = Report(stream, new, old)
    async for stored in history:
        report.first = report.first or stored
        report.last = stored
        decoded = await new.feed(stored)
        if old is not None:
            await old.feed(stored)
        report.events += decoded
        report.undecodable += not decoded
    return report


def diff(old: Mapping[str, Counts], new: Mapping[str, Counts]) -> dict[str, dict[str, object]]:
    """Per rule: old counts, new counts (None where the rule is not in that set), the delta."""
    rows: dict[str, dict[str, object]] = {}
    for name in [*new, *(n for n in old if n not in new)]:
        before, after = old.get(name), new.get(name)
        delta = {c: (after or {}).get(c, 0) - (before or {}).get(c, 0) for c in COLUMNS}
        rows[name] = {"old": before, "new": after, "delta": delta}
    return rows


def _position(stored: Stored | None) -> dict[str, object] | None:
    if stored is None:
        return None
    return {"seq": stored.sequence, "time": _iso(stored.time)}


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="seconds")


# --- text -------------------------------------------------------------------------------


def text(report: Report) -> str:
    lines = [_heading(report)]
    if report.old is None:
        lines += _table(["rule", "fired", *COLUMNS], _rows(report.new.counts))
    else:
        lines.append(
            "counts are ran/throttled/suppressed/failed/asked/undecided; "
            "old: --against, new: --rules"
        )
        lines += _table(["rule", "old", "new", "delta"], _diff_rows(report))
    lines += _escalations("escalations", report.new)
    lines += _would_ask(report.new)
    if report.old is not None:
        lines += _escalations("escalations (old)", report.old)
    return "\n".join(lines)


def _heading(report: Report) -> str:
    if report.first is None or report.last is None:
        return f"stream {report.stream}: no stored events in the range"
    span = (
        f"seq {report.first.sequence}..{report.last.sequence}, "
        f"{_iso(report.first.time)} .. {_iso(report.last.time)}"
    )
    skipped = f", {report.undecodable} not JSON objects" if report.undecodable else ""
    return f"stream {report.stream}: {report.events} event(s) replayed ({span}){skipped}"


def _rows(counts: Mapping[str, Counts]) -> list[list[str]]:
    return [
        [name, str(sum(c.values())), *(str(c[k]) for k in COLUMNS)] for name, c in counts.items()
    ]


def _diff_rows(report: Report) -> list[list[str]]:
    assert report.old is not None
    rows = []
    for name, row in diff(report.old.counts, report.new.counts).items():
        old, new, delta = row["old"], row["new"], row["delta"]
        assert isinstance(delta, dict)
        rows.append(
            [
                name,
                _slashed(old) if isinstance(old, dict) else "(not in old)",
                _slashed(new) if isinstance(new, dict) else "(not in new)",
                "/".join(f"{delta[c]:+d}" if delta[c] else "0" for c in COLUMNS),
            ]
        )
    return rows


def _slashed(counts: Mapping[str, int]) -> str:
    return "/".join(str(counts[c]) for c in COLUMNS)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    return [line(header), *(line(row) for row in rows)]


def _escalations(title: str, replayer: Replayer) -> list[str]:
    counts = replayer.escalations.counts
    if not counts:
        return []
    return [f"{title}: " + ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))]


def _would_ask(replayer: Replayer) -> list[str]:
    """Queries are never sent offline: what each rule would have asked, and that the steps
    hanging on the answers are counted as undecided, not guessed."""
    if not replayer.asked:
        return []
    lines = ["would ask (no answers offline: steps that depend on them are undecided):"]
    for rule, queries in replayer.asked.items():
        for query, times in queries.most_common(_SHOWN_QUERIES):
            lines.append(f"  {rule}: {query} ({times}x)")
        if len(queries) > _SHOWN_QUERIES:
            lines.append(f"  {rule}: ... and {len(queries) - _SHOWN_QUERIES} more")
    return lines


# --- the command ------------------------------------------------------------------------


async def replay_stream(
    settings: Settings,
    span: Span,
    rules: Sequence[Rule],
    against: Sequence[Rule] | None,
    secrets: Secrets,
) -> Report:
    """Connect, read the stream's history in `span`, and replay it through both rule sets."""
    budget = Budget(*settings.max_actions) if settings.max_actions else None
    new = Replayer.build(rules, secrets, budget)
    old = None if against is None else Replayer.build(against, secrets, budget)
    nc = await connect(settings, settings.nats_url or DEFAULT_URL)
    try:
        return await replay(history.read(nc, settings.stream, span), settings.stream, new, old)
    finally:
        await nc.close()
