"""The rule model and the records that flow through the engine.

Everything here is a frozen, slotted, keyword-only dataclass. Rules hold
*compiled* parts (templates, predicates, patterns) made once by the loader, so
the per-event path only calls them. The compiled parts are typed by the small
protocols below, which keep this module free of Jinja and regex details.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from remediator.safety import Calendar, Concurrency
from remediator.strictjson import dumps

JSON = object  # a decoded JSON value; kept as `object` so callers must narrow it


class Renderable(Protocol):
    """A compiled template (or tree of them) that renders against a context."""

    @property
    def source(self) -> str: ...

    def render(self, context: Mapping[str, object]) -> object: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """Where a rule or step was written, for error messages."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """One `match` entry: the value at `path` must pass `test` (compiled at load)."""

    path: tuple[str, ...]
    op: str
    operand: object
    test: Callable[[object], bool]

    @property
    def text(self) -> str:
        return f"{'.'.join(self.path)} {self.op} {self.operand!r}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    attempts: int = 1
    backoff: float = 1.0
    max_backoff: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One action step. `request` renders to the kind's request mapping."""

    name: str
    kind: str
    request: Renderable
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    when: Renderable | None = None
    continue_on_failure: bool = False
    source: Source
    # Its request and `when` are plain reads and literals, which cannot run long: rendered
    # on the event loop, without the worker thread a Jinja template needs (for its timeout).
    instant: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttle:
    key: Renderable | None = None
    cooldown: float | None = None
    max_runs: int | None = None
    window: float | None = None
    escalate: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyQuery:
    """`verify: {query, below | above, within, every}`: the fix holds once the query does."""

    query: Renderable
    below: float | None = None
    above: float | None = None
    every: float = 30.0

    @property
    def bound(self) -> str:
        return f"below {self.below:g}" if self.below is not None else f"above {self.above:g}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verify:
    resolved_within: float  # by query: `within`
    key: Renderable | None = None
    escalate: str | None = None
    escalate_rule: str | None = None  # not resolved: fire this rule (an escalation ladder)
    escalate_at: Source | None = None  # where `escalate_rule` is written (for errors)
    query: VerifyQuery | None = None  # None: a resolving event closes it


@dataclass(frozen=True, slots=True, kw_only=True)
class Correlate:
    """Fire when `count` matching events of one group arrive within `within` seconds."""

    count: int
    within: float
    group_by: Renderable | None = None  # None: one group per rule


@dataclass(frozen=True, slots=True, kw_only=True)
class Absent:
    """Fire when a group has had no matching event for `within` seconds."""

    within: float
    group_by: Renderable | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """`approval:`: ask a human first; `notify` steps announce the request."""

    timeout: float = 1800.0
    notify: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """`schedule:`: run on a clock, `every` seconds (ticks aligned to the epoch, so every
    replica computes the same ones) or on a `cron` expression read in time zone `tz`."""

    every: float | None = None
    cron: str | None = None
    tz: str = "UTC"

    def describe(self) -> str:
        if not self.every:
            return f"cron {self.cron!r} ({self.tz})"
        for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
            if self.every >= size and self.every % size == 0:
                return f"every {self.every / size:g}{unit}"
        return f"every {self.every:g}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    name: str
    description: str = ""
    subjects: tuple[str, ...]
    conditions: tuple[Condition, ...] = ()
    when: Renderable | None = None
    priority: int = 0
    stop: bool = False
    dry_run: bool = False
    throttle: Throttle | None = None
    vars: tuple[tuple[str, Renderable], ...] = ()
    steps: tuple[Step, ...] = ()
    on_failure: tuple[Step, ...] = ()
    verify: Verify | None = None
    correlate: Correlate | None = None
    absent: Absent | None = None
    approval: Approval | None = None
    windows: Calendar | None = None  # None: may act at any time
    concurrency: Concurrency | None = None
    schedule: Schedule | None = None  # runs on a clock; then `subjects` is empty
    source: Source
    # A hash of the rule's definition as written: an approval asked under one definition
    # never runs under another (an edit, or a new rule taking a removed one's name).
    digest: str = ""

    @property
    def windowed(self) -> bool:
        """Fires on a pattern of events (kept in shared state), not on one event."""
        return self.correlate is not None or self.absent is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """JetStream delivery facts for a message (absent in core mode)."""

    stream: str
    sequence: int
    num_delivered: int
    # Another replica may have finished this message already although this is its first
    # delivery here: it was stored longer ago than `ack_wait`, or it came after a
    # reconnect (see `remediator.engine.staleness`). Its completion is looked up.
    may_be_stale: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One decoded alert: what every rule matches and renders against."""

    subject: str
    headers: Mapping[str, str]
    payload: Mapping[str, object]
    event_id: str
    trace_id: str
    delivery: Delivery | None = None
    # A run no alert asked for: {by, at, reason?, forced?} (manual), {by: schedule, at}.
    trigger: Mapping[str, object] | None = None

    @property
    def dry_run(self) -> bool:
        """A manual run asked with --dry-run: render and report, run nothing."""
        return self.trigger is not None and self.trigger.get("dry_run") is True

    @property
    def forced(self) -> bool:
        """A manual run with --force: the rule's throttle and the budget are skipped."""
        return self.trigger is not None and self.trigger.get("forced") is True

    @property
    def redelivered(self) -> bool:
        return self.delivery is not None and self.delivery.num_delivered > 1

    @property
    def may_have_completed(self) -> bool:
        """A redelivery, or a first delivery that may be stale: look the completion up."""
        delivery = self.delivery
        return delivery is not None and (delivery.num_delivered > 1 or delivery.may_be_stale)


STEP_STATUSES = ("succeeded", "failed", "skipped", "dry_run")
RESULT_STATUSES = (
    "succeeded",
    "failed",
    "throttled",
    "suppressed",
    "dry_run",
    "paused",
    "awaiting_approval",
    "denied",
    "expired",
    "skipped",
    "outside_window",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    name: str
    kind: str
    status: str
    attempts: int = 0
    duration_ms: float = 0.0
    output: object = None
    error: str | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, object]) -> StepResult:
        return cls(
            name=str(body["name"]),
            kind=str(body["kind"]),
            status=str(body["status"]),
            attempts=int(str(body.get("attempts", 0))),
            duration_ms=float(str(body.get("duration_ms", 0.0))),
            output=body.get("output"),
            error=_optional_text(body.get("error")),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "duration_ms": round(self.duration_ms, 3),
            "output": self.output,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What one fired rule did for one event; published as `remediator.results.<rule>`."""

    event_id: str
    trace_id: str
    rule: str
    subject: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime
    redelivered: bool = False
    steps: tuple[StepResult, ...] = ()
    reason: str | None = None
    approval_id: str | None = None  # set while `awaiting_approval`
    approval: Mapping[str, object] | None = None  # {id, decision, by, at} once decided
    # Where the alert is stored (stream, sequence): the console shows the event from there.
    origin: tuple[str, int] | None = None
    trigger: Mapping[str, object] | None = None  # a manual or scheduled run (SPEC §15, §16)
    # Its JSON body and bytes, made once: the completion record, the result event and
    # the console's log all take these (each encoding was 5% of a firing daemon).
    _encoded: tuple[Mapping[str, object], bytes] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000

    @classmethod
    def from_json(cls, body: Mapping[str, object]) -> Result:
        """Read back a stored result (a completion record) to publish it again."""
        steps = body.get("steps")
        return cls(
            event_id=str(body["event_id"]),
            trace_id=str(body["trace_id"]),
            rule=str(body["rule"]),
            subject=str(body["subject"]),
            status=str(body["status"]),
            started_at=dt.datetime.fromisoformat(str(body["started_at"])),
            finished_at=dt.datetime.fromisoformat(str(body["finished_at"])),
            redelivered=bool(body.get("redelivered")),
            steps=tuple(StepResult.from_json(s) for s in steps if isinstance(s, Mapping))
            if isinstance(steps, list)
            else (),
            reason=_optional_text(body.get("reason")),
            approval_id=_optional_text(body.get("approval_id")),
            approval=approval if isinstance(approval := body.get("approval"), Mapping) else None,
            origin=_origin(body.get("origin")),
            trigger=trigger if isinstance(trigger := body.get("trigger"), Mapping) else None,
        )

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "event_id": self.event_id,
            "trace_id": self.trace_id,
            "rule": self.rule,
            "subject": self.subject,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_ms": round(self.duration_ms, 3),
            "redelivered": self.redelivered,
            "steps": [s.to_json() for s in self.steps],
        }
        if self.reason is not None:
            body["reason"] = self.reason
        if self.approval_id is not None:
            body["approval_id"] = self.approval_id
        if self.approval is not None:
            body["approval"] = dict(self.approval)
        if self.origin is not None:
            body["origin"] = {"stream": self.origin[0], "sequence": self.origin[1]}
        if self.trigger is not None:
            body["trigger"] = dict(self.trigger)
        return body

    def encode(self) -> bytes:
        """The result event's bytes: one encoding for the completion record and the event."""
        return self._encoding()[1]

    def body(self) -> Mapping[str, object]:
        """The JSON body `encode` wrote (shared: read it, never change it)."""
        return self._encoding()[0]

    def _encoding(self) -> tuple[Mapping[str, object], bytes]:
        if self._encoded is None:
            body = self.to_json()
            # Frozen, but a cache of what the fields say is not a change of them.
            object.__setattr__(self, "_encoded", (body, dumps(body).encode()))
        assert self._encoded is not None
        return self._encoded


def _origin(value: object) -> tuple[str, int] | None:
    if not isinstance(value, Mapping):
        return None
    stream, sequence = value.get("stream"), value.get("sequence")
    if isinstance(stream, str) and isinstance(sequence, int):
        return stream, sequence
    return None


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)
