"""A manual run (SPEC §16): the request an operator makes, as stored under `trigger.<id>`.

Pure data and its moves; the NATS side (`nats.trigger`) stores, claims and
answers it. A request is `pending` until one replica claims it by
compare-and-set (`running`), then `done` with the result, or `failed` with why
it could not run. Its event is the one given, the stored event of an earlier
result (`from_event`, looked up by the replica that runs it), or, for a
scheduled rule, the event of a tick at the time of the request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from remediator.model import Delivery, Event, Rule


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    id: str
    rule: str
    by: str
    at: float
    expires_at: float  # not claimed by then: nobody runs it (the asker stopped waiting)
    payload: Mapping[str, object] | None = None
    from_event: str | None = None
    reason: str = ""
    forced: bool = False
    dry_run: bool = False
    source: str = "cli"
    state: str = "pending"  # running, done, failed
    claimed_by: str | None = None
    result: Mapping[str, object] | None = None
    error: str | None = None

    @classmethod
    def new(cls, rule: str, by: str, now: float, wait: float, **given: object) -> RunRequest:
        base = cls(id=uuid.uuid4().hex[:16], rule=rule, by=by, at=now, expires_at=now + wait)
        return base.with_(**given)

    @property
    def key(self) -> str:
        return f"trigger.{self.id}"

    def trigger(self) -> dict[str, object]:
        """What the run's result carries as `trigger`."""
        body: dict[str, object] = {"by": self.by, "at": _iso(self.at), "forced": self.forced}
        if self.reason:
            body["reason"] = self.reason
        if self.dry_run:
            body["dry_run"] = True
        if self.from_event:
            body["from"] = self.from_event
        body["id"] = self.id
        return body

    def event(
        self,
        rule: Rule,
        subject: str | None,
        payload: Mapping[str, object],
        stored: tuple[str, int] | None = None,
    ) -> Event:
        """The event the rule runs with: `subject` of an earlier result, else the rule's;
        `stored` where its payload was kept (stream, sequence), which the result names."""
        delivery = (
            None
            if stored is None
            else Delivery(stream=stored[0], sequence=stored[1], num_delivered=1)
        )
        return Event(
            subject=subject or default_subject(rule),
            headers={},
            payload=payload,
            event_id=f"trigger:{self.id}",
            trace_id=uuid.uuid4().hex,
            trigger=self.trigger(),
            delivery=delivery,
        )

    def with_(self, **changes: object) -> RunRequest:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), default=str).encode()

    @classmethod
    def decode(cls, data: bytes) -> RunRequest:
        body = json.loads(data)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in body.items() if k in names})


def default_subject(rule: Rule) -> str:
    """A literal subject the rule listens on, else `remediator.trigger.<rule>`."""
    for subject in rule.subjects:
        if "*" not in subject and ">" not in subject:
            return subject
    if rule.schedule is not None:
        return f"remediator.schedule.{rule.name}"
    return f"remediator.trigger.{rule.name}"
