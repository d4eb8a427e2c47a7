"""Human control, the pure part: pauses, approval requests, and the views the engine consults.

A `Pause` holds back all rules, one rule, or one rule for one throttle-key
value, until a time. `Pauses` is the in-memory view every replica keeps
current from the control bucket (the NATS edge feeds it); the engine asks it
once per firing with dictionary look-ups, never a round trip. An
`ApprovalRequest` is what a rule with `approval:` stores instead of acting:
the event it fired on, the steps rendered as in a dry run, an expiry, and
the decision once someone makes it. Its `state` moves only forward:

    pending -> approved -> running -> done
            -> denied   ----------->  done
            -> expired  ----------->  done

Every move is a compare-and-set on the stored request (the store's job), so
exactly one decision wins and exactly one replica runs the steps.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from remediator.model import Event, StepResult

ALL = "all"
EVENT_CAP = 64 * 1024  # characters of an event (as JSON) an approval request stores itself
DECIDED = ("approved", "denied", "expired")
FINAL = ("done",)


_LAST_SECOND = 253402300799.0  # 9999-12-31T23:59:59Z: a pause "for 1000000d" still prints


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(min(seconds, _LAST_SECOND), dt.UTC).isoformat(
        timespec="seconds"
    )


def digest(text: str, size: int = 8) -> str:
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    """All rules (`scope` `all`), one rule, or one rule for one throttle-key value."""

    scope: str
    key: str | None = None
    by: str
    reason: str = ""
    since: float
    until: float

    @property
    def name(self) -> str:
        """The control-bucket key holding this pause."""
        if self.scope == ALL:
            return "pause.all"
        if self.key is None:
            return f"pause.rule.{self.scope}"
        return f"pause.key.{self.scope}.{digest(self.key)}"

    def active(self, now: float) -> bool:
        return self.until > now

    @property
    def what(self) -> str:
        """The scope in words, as people name it (never the bucket key)."""
        what = "all rules" if self.scope == ALL else f"rule {self.scope}"
        return what if self.key is None else f"{what} for key {self.key!r}"

    def describe(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"paused ({self.what}) by {self.by} until {_iso(self.until)}{why}"

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def summary(self) -> dict[str, object]:
        """The public view: times as ISO 8601."""
        return self.to_json() | {"since": _iso(self.since), "until": _iso(self.until)}

    @classmethod
    def from_json(cls, body: Mapping[str, object]) -> Pause:
        key = body.get("key")
        return cls(
            scope=str(body["scope"]),
            key=None if key is None else str(key),
            by=str(body.get("by", "")),
            reason=str(body.get("reason", "")),
            since=float(str(body.get("since", 0.0))),
            until=float(str(body["until"])),
        )


class PauseView(Protocol):
    """What the engine asks per firing: is this rule (for this throttle key) paused?"""

    def paused(self, rule: str, key: str) -> Pause | None: ...


@dataclass(slots=True)
class Pauses:
    """The pauses in force, kept current by a watcher; look-ups only, no I/O."""

    clock: Callable[[], float] = time.time
    _all: Pause | None = None
    _rules: dict[str, Pause] = field(default_factory=dict)
    _keys: dict[tuple[str, str], Pause] = field(default_factory=dict)

    def apply(self, name: str, pause: Pause | None) -> None:
        """A change seen in the bucket: `pause` is None when the key was deleted."""
        if name == "pause.all":
            self._all = pause
        elif pause is not None and pause.key is not None:
            self._keys[(pause.scope, pause.key)] = pause
        elif pause is not None:
            self._rules[pause.scope] = pause
        else:
            self._forget(name)

    def _forget(self, name: str) -> None:
        for rule, pause in list(self._rules.items()):
            if pause.name == name:
                del self._rules[rule]
        for pair, pause in list(self._keys.items()):
            if pause.name == name:
                del self._keys[pair]

    def paused(self, rule: str, key: str) -> Pause | None:
        now = self.clock()
        for found in (self._all, self._rules.get(rule), self._keys.get((rule, key))):
            if found is not None and found.active(now):
                return found
        return None

    def active(self) -> list[Pause]:
        now = self.clock()
        every = [self._all, *self._rules.values(), *self._keys.values()]
        return [p for p in every if p is not None and p.active(now)]

    def expired(self) -> list[Pause]:
        now = self.clock()
        every = [self._all, *self._rules.values(), *self._keys.values()]
        return [p for p in every if p is not None and not p.active(now)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequest:
    """A fired rule waiting for a human's yes, as stored under `approval.<id>`."""

    id: str
    rule: str
    subject: str
    payload: Mapping[str, object]
    headers: Mapping[str, str]
    event_id: str
    trace_id: str
    steps: tuple[Mapping[str, object], ...]
    created_at: float
    expires_at: float
    url: str = ""
    state: str = "pending"
    decision: str | None = None
    decided_by: str | None = None
    decided_at: float | None = None
    comment: str = ""
    claimed_by: str | None = None
    claimed_at: float | None = None
    outcome: str | None = None
    # An event over EVENT_CAP is not stored in the request: it is read back from its stream
    # (`origin`) when the approved steps run, so requests stay small in the bucket.
    origin: tuple[str, int] | None = None
    rule_digest: str = ""  # the definition asked under: another one expires the request
    throttle_key: str = ""  # the rendered throttle key: its pauses and lease apply to the run
    reason: str = ""  # why it expired, when not for want of a decision
    trigger: Mapping[str, object] | None = None  # the manual or scheduled run that asked

    @classmethod
    def ask(
        cls,
        rule: str,
        event: Event,
        rendered: Iterable[StepResult],
        now: dt.datetime,
        timeout: float,
        **run: str,
    ) -> ApprovalRequest:
        """A new request for `rule` fired by `event` (its `url` is the desk's to set)."""
        sequence = event.delivery.sequence if event.delivery else uuid.uuid4().hex
        payload, origin = dict(event.payload), None
        if event.delivery is not None and len(json.dumps(payload, default=str)) > EVENT_CAP:
            payload, origin = {}, (event.delivery.stream, event.delivery.sequence)
        return cls(
            id=approval_id(event.event_id, rule, sequence),
            rule=rule,
            subject=event.subject,
            payload=payload,
            origin=origin,
            headers=dict(event.headers),
            event_id=event.event_id,
            trace_id=event.trace_id,
            steps=tuple(step.to_json() for step in rendered),
            created_at=now.timestamp(),
            expires_at=now.timestamp() + timeout,
            rule_digest=run.get("rule_digest", ""),
            throttle_key=run.get("throttle_key", ""),
            trigger=None if event.trigger is None else dict(event.trigger),
        )

    def slim(self) -> ApprovalRequest:
        """What a replica keeps in memory to list and follow it: no event (the run reads
        the request whole from the bucket)."""
        return self.with_(payload={}, headers={})

    def event(self) -> Event:
        """The event the request was made for, to render the steps again."""
        return Event(
            subject=self.subject,
            headers=self.headers,
            payload=self.payload,
            event_id=self.event_id,
            trace_id=self.trace_id,
            trigger=self.trigger,
        )

    def context(self) -> dict[str, str]:
        """`approval.*` in the templates of the `notify` steps."""
        return {"id": self.id, "url": self.url, "expires_at": _iso(self.expires_at)}

    @property
    def key(self) -> str:
        return f"approval.{self.id}"

    def approval(self) -> dict[str, object]:
        """What the run's result carries as `approval`."""
        at = None if self.decided_at is None else _iso(self.decided_at)
        return {"id": self.id, "decision": self.decision, "by": self.decided_by, "at": at}

    def with_(self, **changes: object) -> ApprovalRequest:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, object]:
        body = dataclasses.asdict(self)
        body["steps"] = list(self.steps)
        return body

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), default=str).encode()

    @classmethod
    def decode(cls, data: bytes) -> ApprovalRequest:
        body = json.loads(data)
        body["steps"] = tuple(body.get("steps") or ())
        if body.get("origin") is not None:
            body["origin"] = (str(body["origin"][0]), int(body["origin"][1]))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in body.items() if k in names})

    def summary(self) -> dict[str, object]:
        """The public view: no payload or headers (they may be large)."""
        body = self.to_json()
        for private in ("payload", "headers", "claimed_by", "claimed_at"):
            body.pop(private, None)
        body["created_at"] = _iso(self.created_at)
        body["expires_at"] = _iso(self.expires_at)
        if self.decided_at is not None:
            body["decided_at"] = _iso(self.decided_at)
        return body


class AlreadyDecided(Exception):
    """A decision on a request someone has decided already."""

    def __init__(self, request: ApprovalRequest) -> None:
        if request.state == "expired" or request.outcome == "expired":
            why = request.reason or f"no decision before {_iso(request.expires_at)}"
            message = f"approval {request.id} expired ({why}): nothing runs"
        else:
            by = request.decided_by or "the timeout"
            state = request.decision or request.state
            message = f"approval {request.id} already decided by {by} ({state})"
        super().__init__(message)
        self.request = request


def decide(
    request: ApprovalRequest, decision: str, by: str, comment: str, now: float
) -> ApprovalRequest:
    """The request after `decision` (`approved` or `denied`); AlreadyDecided if it was."""
    if request.state != "pending":
        raise AlreadyDecided(request)
    if request.expires_at <= now:
        return expire(request, now)
    return request.with_(
        state=decision, decision=decision, decided_by=by, decided_at=now, comment=comment
    )


def expire(request: ApprovalRequest, now: float, reason: str = "") -> ApprovalRequest:
    """Expired for want of a decision, or (`reason`) because what was approved is gone."""
    return request.with_(
        state="expired",
        decision="expired",
        decided_by="timeout" if not reason else request.decided_by or "remediator",
        decided_at=now if not reason else request.decided_at or now,
        reason=reason,
    )


def approval_id(event_id: str, rule: str, sequence: int | str) -> str:
    """Stable across redeliveries of one message (the stream sequence), fresh for a re-sent
    alert: a redelivered message finds the request it made, not a second one."""
    return digest(f"{event_id}\0{rule}\0{sequence}")


class ApprovalDesk(Protocol):
    """Where the engine files a request: stores and announces it (the NATS edge)."""

    async def open(self, request: ApprovalRequest) -> ApprovalRequest:
        """Give it its `url`, store it (or find the one a redelivery stored), publish it."""
        ...


def pending(requests: Iterable[ApprovalRequest]) -> list[ApprovalRequest]:
    return sorted((r for r in requests if r.state == "pending"), key=lambda r: r.created_at)
