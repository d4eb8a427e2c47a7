"""Correlation windows and silence timers: rules that fire on a pattern of events.

A `correlate` rule keeps, per group, the group's recent matching events in one
state key (`corr.<rule>.<digest(group)>`): at most `count - 1` of them, oldest
first, each with its time, payload and event id. Every event reads the key,
drops what fell out of the window, appends itself and writes the key back with
compare-and-set; the writer whose event reaches `count` empties the window and
fires. So N replicas fed one group's events fire exactly once per window, and a
replica that dies between events loses nothing: the window is in the store.
The emptied key remembers the firing (event id and the `count` payloads), so a
redelivery of the event that fired fires again (the completion record then
deduplicates it) instead of opening a new window.

An `absent` rule keeps, per group, a timer (`absent.<rule>.<digest(group)>`):
the group's last event and the deadline it set. Nothing waits on a timer in
memory: every replica sweeps the timers whose deadline it knows has passed
(`deadlines.Deadlines`: a heap, so an idle sweep reads nothing; all the keys
are read at the first sweep and once a minute), and a due timer is claimed by
compare-and-set (a claim with a lease, so a claimer that dies is
replaced), fired by the one claimer, and deleted; the group's next event starts
a new one. A timer that ran out while every daemon was down fires at the first
sweep after a start.

Bounds: a correlate group holds at most `count - 1` events plus the `count`
payloads of its last firing; a group whose newest event left the window (plus a
grace for redeliveries) is deleted by `clean`. An absent group holds one event.
The state bucket's TTL removes whatever is left behind by removed rules.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from remediator.engine.deadlines import Deadlines
from remediator.engine.state import Conflict, StateStore, write
from remediator.model import Event, Rule

CORRELATE_PREFIX = "corr"
ABSENT_PREFIX = "absent"
REDELIVERY_GRACE = 900.0  # a fired window's memory outlives every redelivery of its event
CLAIM_LEASE = 300.0  # a claimer that has not finished by then is presumed dead


@dataclass(frozen=True, slots=True)
class Firing:
    """A windowed rule that fires: the event to run it for and what it adds to the context."""

    rule: Rule
    event: Event
    extra: Mapping[str, object]
    claim: tuple[str, str] | None = None  # (timer key, token) for an absence, to clear after


@dataclass(frozen=True, slots=True)
class WindowState:
    """What `explain` shows: how far a group's window has filled."""

    group: str
    seen: int


def group_of(rule: Rule, context: Mapping[str, object]) -> str:
    """The rendered `group_by` (empty: one group per rule); TemplateError when it fails."""
    spec = rule.correlate or rule.absent
    if spec is None or spec.group_by is None:
        return ""
    return str(spec.group_by.render(context))


@dataclass(frozen=True, slots=True)
class Windows:
    """Correlation windows and absence timers in a shared compare-and-set store."""

    store: StateStore
    deadlines: Deadlines = field(default_factory=Deadlines)

    async def observe(self, rule: Rule, event: Event, group: str, now: float) -> Firing | None:
        """Count `event` in its group; the firing when it completes a window."""
        if rule.correlate is not None:
            return await self._count(rule, event, group, now)
        await self._restart_timer(rule, event, group, now)
        return None

    async def _count(self, rule: Rule, event: Event, group: str, now: float) -> Firing | None:
        assert rule.correlate is not None
        count, within = rule.correlate.count, rule.correlate.within
        key = _key(CORRELATE_PREFIX, rule, group)
        while True:
            entry = await self.store.get(key)
            state = json.loads(entry.value) if entry is not None else {}
            fired = state.get("fired")
            events = [e for e in state.get("events", []) if e["at"] > now - within]
            # Only a redelivered (or maybe stale) message can have been seen: alike first
            # deliveries (equal payloads without a message id, in core mode) each count.
            seen = event.may_have_completed
            if seen and fired is not None and fired["id"] == event.event_id:
                return _correlated(rule, event, fired["correlated"])  # it fired: again
            if seen and any(e["id"] == event.event_id for e in events):
                return None  # counted already
            events.append(_entry(event, now))
            # Oldest first means stream order: events of one group but different ordering
            # keys are processed concurrently, so the one counted first may be the later.
            events.sort(key=_stream_order)
            firing = len(events) >= count
            if firing:
                correlated = [e["payload"] for e in events[-count:]]
                fired = {"id": event.event_id, "at": now, "correlated": correlated}
                events = []
            state = {"group": group, "events": events, "fired": fired}
            try:
                await write(self.store, key, json.dumps(state).encode(), entry)
            except Conflict:
                continue  # another replica counted an event first: count again on top of it
            return _correlated(rule, event, correlated) if firing else None

    async def _restart_timer(self, rule: Rule, event: Event, group: str, now: float) -> None:
        assert rule.absent is not None
        timer = {
            "rule": rule.name,
            "group": group,
            "last_seen": now,
            "deadline": now + rule.absent.within,
            "event": _stored_event(event),
            "claim": None,
        }
        # Last writer wins: the latest event restarts the timer, and overwriting a claim
        # makes the claimer's clean-up a no-op, so the new silence is timed afresh.
        key = _key(ABSENT_PREFIX, rule, group)
        await self.store.put(key, json.dumps(timer).encode())
        self.deadlines.note(key, float(timer["deadline"]))  # type: ignore[arg-type]

    async def due(self, rules: Mapping[str, Rule], now: float) -> list[Firing]:
        """Claim every absence timer that ran out; each is claimed by one replica only."""
        firings = []
        if self.deadlines.full_scan_due(now):
            keys = await self.store.keys(ABSENT_PREFIX)
            self.deadlines.scanned(now)
        else:
            keys = self.deadlines.due(now)
        for key in keys:
            entry = await self.store.get(key)
            if entry is None:
                self.deadlines.forget(key)
                continue
            timer = json.loads(entry.value)
            rule = rules.get(str(timer["rule"]))
            if rule is None or rule.absent is None:
                continue  # not loaded here (yet): the next full read looks again
            if timer["deadline"] > now:
                self.deadlines.note(key, float(timer["deadline"]))  # restarted elsewhere
                continue
            claim = timer.get("claim")
            if claim is not None and claim["until"] > now:
                self.deadlines.note(key, float(claim["until"]))  # look again if it dies
                continue  # another replica is firing it
            token = uuid.uuid4().hex
            timer["claim"] = {"token": token, "until": now + CLAIM_LEASE}
            try:
                await self.store.update(key, json.dumps(timer).encode(), entry.revision)
            except Conflict:
                self.deadlines.note(key, now)  # read it again at the next sweep
                continue  # another replica claimed it, or a new event restarted it
            self.deadlines.note(key, now + CLAIM_LEASE)  # fired, or taken over if we die
            silent_for = round(now - float(timer["last_seen"]), 3)
            event = _event_from(timer["event"])
            firings.append(Firing(rule, event, {"silent_for": silent_for}, (key, token)))
        return firings

    async def cleared(self, firing: Firing) -> None:
        """The absence fired: drop its timer unless a new event restarted it meanwhile."""
        if firing.claim is None:
            return
        key, token = firing.claim
        entry = await self.store.get(key)
        if entry is None:
            return
        claim = json.loads(entry.value).get("claim")
        if claim is None or claim["token"] != token:
            return
        try:
            await self.store.delete(key, entry.revision)
        except Conflict:
            return  # a new event arrived: its timer stays

    async def clean(self, rules: Mapping[str, Rule], now: float) -> int:
        """Delete correlation groups whose every event (and firing) has left the window."""
        removed = 0
        for key in await self.store.keys(CORRELATE_PREFIX):
            entry = await self.store.get(key)
            rule = rules.get(key.split(".")[1])
            if entry is None or rule is None or rule.correlate is None:
                continue
            state = json.loads(entry.value)
            times = [e["at"] for e in state.get("events", [])]
            if state.get("fired") is not None:
                times.append(state["fired"]["at"] + REDELIVERY_GRACE)
            if times and max(times) > now - rule.correlate.within:
                continue
            try:
                await self.store.delete(key, entry.revision)
                removed += 1
            except Conflict:
                continue
        return removed

    async def state(self, rule: Rule, group: str, now: float) -> WindowState:
        """How many of the group's events are in the window now (for `explain`)."""
        if rule.correlate is None:
            return WindowState(group, 0)
        entry = await self.store.get(_key(CORRELATE_PREFIX, rule, group))
        events = json.loads(entry.value).get("events", []) if entry is not None else []
        return WindowState(group, sum(e["at"] > now - rule.correlate.within for e in events))


def _entry(event: Event, now: float) -> dict[str, object]:
    entry: dict[str, object] = {"at": now, "id": event.event_id, "payload": dict(event.payload)}
    if event.delivery is not None:
        entry["seq"] = event.delivery.sequence
    return entry


def _stream_order(entry: Mapping[str, Any]) -> tuple[bool, int, float]:
    """By stream sequence where known (JetStream), else by the time it was counted."""
    seq = entry.get("seq")
    return seq is None, int(seq or 0), float(entry["at"])


def _correlated(rule: Rule, event: Event, payloads: Sequence[object]) -> Firing:
    return Firing(rule, event, {"correlated": list(payloads)})


def _stored_event(event: Event) -> dict[str, object]:
    return {
        "subject": event.subject,
        "headers": dict(event.headers),
        "payload": dict(event.payload),
        "event_id": event.event_id,
        "trace_id": event.trace_id,
    }


def _event_from(stored: Mapping[str, object]) -> Event:
    headers, payload = stored["headers"], stored["payload"]
    assert isinstance(headers, Mapping) and isinstance(payload, Mapping)
    return Event(
        subject=str(stored["subject"]),
        headers={str(k): str(v) for k, v in headers.items()},
        payload=dict(payload),
        event_id=str(stored["event_id"]),
        trace_id=str(stored["trace_id"]),
    )


def _key(prefix: str, rule: Rule, group: str) -> str:
    digest = hashlib.blake2b(group.encode(), digest_size=12).hexdigest()
    return f"{prefix}.{rule.name}.{digest}"
