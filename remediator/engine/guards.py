"""Guards: what may run. Completion records, throttles, the global budget, verification.

All state goes through a `StateStore` with compare-and-set, so N replicas decide as
one: a throttle decision and its reservation are one write, and whoever loses the race
reads again. The throttle entry also carries a lease (`busy_until`), so two events with
the same throttle key never run their steps at the same time anywhere in the fleet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from remediator.actions.publish import Publisher
from remediator.engine.limits import MAX_ID, bounded_id, cap_text
from remediator.engine.reach import StoreCheck
from remediator.engine.state import Conflict, Entry, StateStore, write
from remediator.engine.verification import (
    ESCALATIONS,
    KEY_CAP,
    Querier,
    Verifier,
    bounded_key,
    ladder_fields,
    query_fields,
)
from remediator.errors import TemplateError, TransportError, Unpublishable
from remediator.metrics import Metrics
from remediator.model import Event, Rule, Throttle
from remediator.strictjson import dumps

log = logging.getLogger(__name__)

_MAX_LEASE = 3600.0
_RECORD_PAUSES = (0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)  # about 14 s in all


@dataclass(frozen=True, slots=True)
class Budget:
    max_runs: int
    window: float


@dataclass(frozen=True, slots=True)
class Admission:
    """May the rule run? `status` is `run`, `throttled` or `suppressed`."""

    status: str
    reason: str | None = None
    key: str | None = None  # the throttle state key holding our lease
    token: str | None = None


_RUN = Admission("run")


@dataclass(slots=True)
class _Throttled:
    """One throttle bucket as stored: run times in the window, circuit, lease."""

    last: float | None = None
    runs: list[float] = field(default_factory=list)
    opened: float | None = None  # when the circuit opened (escalated once)
    open_until: float | None = None  # set when a verification failed
    busy_until: float | None = None
    token: str | None = None
    event: str | None = None  # the event whose run holds the latest reservation

    @classmethod
    def decode(cls, entry: Entry | None) -> _Throttled:
        return cls() if entry is None else cls(**json.loads(entry.value))

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()


@dataclass(slots=True, kw_only=True)
class Guards:
    store: StateStore
    verifications: StateStore
    publisher: Publisher
    budget: Budget | None = None
    metrics: Metrics | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    querier: Querier | None = None  # asks verification queries; None: none are recorded
    _check: StoreCheck = field(init=False, repr=False)
    verifier: Verifier = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._check = StoreCheck(self.store)
        self.verifier = Verifier(
            store=self.verifications,
            publish=self._publish,
            open_circuit=self._open_after_failure,
            clock=self.clock,
            querier=self.querier,
        )

    async def writable(self) -> None:
        """The store takes writes now (TransportError if not): checked before steps run."""
        await self._check.writable()

    # -- completion records: a redelivered event never re-runs a finished rule

    async def completed(self, rule: Rule, event: Event) -> dict[str, object] | None:
        entry = await self.store.get(_done_key(rule, event))
        return None if entry is None else dict(json.loads(entry.value))

    async def record(self, rule: Rule, event: Event, body: bytes) -> None:
        """`body`: the encoded result. The latest result wins: an alert re-sent after the
        stream's duplicate window (same event id, new message) runs again under its
        throttle, and its redelivery must report that run, not the first one."""
        # The steps have run: a few seconds' patience (a bucket leader failing over) here
        # saves running them again on redelivery.
        for pause in _RECORD_PAUSES:
            try:
                await self.store.put(_done_key(rule, event), body)
                return
            except Unpublishable:
                raise  # too big for the store: no patience makes it fit
            except TransportError as exc:
                log.warning("completion not recorded, retry in %gs: %s", pause, exc)
            await self.sleep(pause)
        await self.store.put(_done_key(rule, event), body)

    # -- throttle and budget

    async def admit(self, rule: Rule, event: Event, bucket: str, *, spend: bool) -> Admission:
        """Decide and reserve in one compare-and-set; wait while another run holds the lease."""
        throttle = rule.throttle
        spend = spend and self.budget is not None
        if throttle is None and not spend:
            return _RUN  # nothing to guard: no state to read or write
        key = _throttle_key(rule, bucket) if throttle is not None else None
        token = uuid.uuid4().hex
        if throttle is not None and key is not None:
            refused = await self._reserve(rule, event, throttle, key, bucket, token)
            if refused is not None:
                return refused
        if spend and not await self._spend(rule, event):
            if key is not None:
                await self._undo(key, token)
            return Admission("suppressed", "global budget spent for this window")
        return Admission("run", key=key, token=token)

    async def release(self, admission: Admission) -> None:
        if admission.key is not None:
            await self._update(admission.key, lambda s: _clear_lease(s, admission.token))

    async def _reserve(
        self, rule: Rule, event: Event, throttle: Throttle, key: str, bucket: str, token: str
    ) -> Admission | None:
        while True:
            entry = await self.store.get(key)
            state, now = _Throttled.decode(entry), self.clock()
            if state.event == event.event_id:
                # Our own reservation, left by a run cut off by a crash: run again.
                state.busy_until, state.token = now + _lease(rule), token
                try:
                    await write(self.store, key, state.encode(), entry)
                    return None
                except Conflict:
                    continue
            reason = _refusal(throttle, state, now)
            if reason is not None:
                if _opens_circuit(throttle, state, now):
                    await self._open_circuit(rule, event, key, bucket, reason, entry)
                return Admission("throttled", reason)
            if state.busy_until is not None and state.busy_until > now:
                await self.sleep(self.rng.uniform(0.05, 0.25))
                continue
            window = throttle.window or 0.0
            state.runs = [t for t in state.runs if t > now - window] + [now]
            state.last, state.opened, state.event = now, None, event.event_id
            state.busy_until, state.token = now + _lease(rule), token
            try:
                await write(self.store, key, state.encode(), entry)
                return None
            except Conflict:
                continue

    async def _open_circuit(
        self, rule: Rule, event: Event, key: str, bucket: str, reason: str, entry: Entry | None
    ) -> None:
        state = _Throttled.decode(entry)
        state.opened = self.clock()
        try:
            await write(self.store, key, state.encode(), entry)
        except Conflict:
            return  # another event saw it first and escalates
        escalate = (rule.throttle.escalate if rule.throttle else None) or ESCALATIONS
        await self.escalate(escalate, "circuit_open", rule, event, reason, key=bucket)

    async def _spend(self, rule: Rule, event: Event) -> bool:
        assert self.budget is not None
        budget = self.budget
        while True:
            entry = await self.store.get("budget")
            now = self.clock()
            state = json.loads(entry.value) if entry else {}
            if not state or now >= state["start"] + budget.window:
                state = {"start": now, "count": 0, "escalated": False}
            spent = state["count"] >= budget.max_runs
            if spent and state["escalated"]:
                return False
            state["escalated"] = state["escalated"] or spent
            state["count"] += 0 if spent else 1
            try:
                await write(self.store, "budget", json.dumps(state).encode(), entry)
            except Conflict:
                continue
            if spent:
                detail = f"{budget.max_runs} runs per {budget.window:g}s across the fleet"
                await self.escalate(ESCALATIONS, "budget_spent", rule, event, detail)
            return not spent

    async def _undo(self, key: str, token: str) -> None:
        def undo(state: _Throttled) -> _Throttled:
            if state.token == token and state.runs:
                state.runs.pop()
                state.last = state.runs[-1] if state.runs else None
                state.event = None
            return _clear_lease(state, token)

        await self._update(key, undo)

    async def _update(self, key: str, change: Callable[[_Throttled], _Throttled]) -> None:
        while True:
            entry = await self.store.get(key)
            if entry is None:
                return
            try:
                await self.store.update(
                    key, change(_Throttled.decode(entry)).encode(), entry.revision
                )
                return
            except Conflict:
                continue

    # -- verification: did the fix work? (see `verification`)

    async def expect(
        self,
        rule: Rule,
        event: Event,
        key: str,
        bucket: str,
        context: Mapping[str, object] | None = None,
    ) -> None:
        """Record the verification of a run whose steps succeeded; a query verification
        renders its query from the run's `context`."""
        assert rule.verify is not None
        now = self.clock()
        record: dict[str, object] = {
            "rule": rule.name,
            "key": bounded_key(key),
            "deadline": now + rule.verify.resolved_within,
            "event_id": event.event_id,
            "trace_id": event.trace_id,
            "subject": event.subject,
            "throttle": _throttle_key(rule, bucket) if rule.throttle else None,
            "escalate": rule.verify.escalate or ESCALATIONS,
        }
        if rule.verify.escalate_rule is not None:
            record |= ladder_fields(rule.verify.escalate_rule, event)
        if rule.verify.query is not None:
            try:
                record |= query_fields(rule, context or {}, now)
            except TemplateError as exc:
                log.warning("rule %s: verify query: %s", rule.name, exc)
                return
        await self.verifier.expect(rule, event, record)

    async def resolve(self, rule: Rule, event: Event, key: str) -> bool:
        return await self.verifier.resolve(rule, event, key)

    async def expire(self, rules: Mapping[str, Rule]) -> list[str]:
        """Escalate what ran out; the rules that failed."""
        return [str(record["rule"]) for record in await self.verifier.expire(rules)]

    async def sweep_verifications(self, rules: Mapping[str, Rule]) -> list[dict[str, object]]:
        """Ask the queries whose turn came, then escalate what ran out (the records this
        replica ended, returned for their ladders); counted by rule."""
        verified = await self.verifier.check_queries()
        failed = await self.verifier.expire(rules)
        if self.metrics is not None:
            for name in verified:
                self.metrics.verifications.labels(name, "resolved").inc()
            for record in failed:
                self.metrics.verifications.labels(str(record["rule"]), "not_resolved").inc()
        return failed

    async def _open_after_failure(self, throttle_key: str, now: float, hold: float) -> None:
        await self._update(throttle_key, lambda s: dataclasses.replace(s, open_until=now + hold))

    async def escalate(
        self,
        subject: str,
        reason: str,
        rule: Rule,
        event: Event,
        detail: str,
        key: str | None = None,
    ) -> None:
        body = {
            "reason": reason,
            "rule": rule.name,
            "key": None if key is None else cap_text(key, KEY_CAP),
            "detail": detail,
            "event_id": event.event_id,
            "trace_id": event.trace_id,
            "subject": event.subject,
        }
        await self._publish(subject, body, f"{reason}:{rule.name}:{key}:{event.event_id}")

    async def _publish(self, subject: str, body: Mapping[str, object], msg_id: str) -> None:
        headers = {"Nats-Msg-Id": bounded_id(msg_id, 2 * MAX_ID)}  # keys come from events
        reason = body.get("reason")
        if self.metrics is not None and isinstance(reason, str):
            self.metrics.escalations.labels(reason).inc()
        trace = body.get("trace_id")
        if isinstance(trace, str):
            headers["trace-id"] = trace
        try:
            await self.publisher.publish(subject, dumps(body).encode(), headers)
        except TransportError as exc:
            log.error("cannot publish %s to %s: %s", body.get("reason", "event"), subject, exc)


def _refusal(throttle: Throttle, state: _Throttled, now: float) -> str | None:
    if state.open_until is not None and state.open_until > now:
        left = state.open_until - now
        return f"circuit open: the last run was not verified as resolved; closes in {left:.0f}s"
    if throttle.cooldown and state.last is not None and now - state.last < throttle.cooldown:
        return f"cooldown: ran {now - state.last:.1f}s ago, cooldown {throttle.cooldown:g}s"
    if _circuit_full(throttle, state, now):
        return f"circuit open: {throttle.max_runs} runs within {throttle.window:g}s"
    return None


def _circuit_full(throttle: Throttle, state: _Throttled, now: float) -> bool:
    if not throttle.max_runs or not throttle.window:
        return False
    recent = [t for t in state.runs if t > now - throttle.window]
    return len(recent) >= throttle.max_runs


def _opens_circuit(throttle: Throttle, state: _Throttled, now: float) -> bool:
    """The first refusal of a full circuit escalates; later ones only report."""
    return _circuit_full(throttle, state, now) and state.opened is None


def _clear_lease(state: _Throttled, token: str | None) -> _Throttled:
    if state.token == token:
        state.busy_until, state.token = None, None
    return state


def _lease(rule: Rule) -> float:
    """Longest a run can take, so a crashed holder's lease runs out on its own."""
    total = sum(
        s.timeout * s.retry.attempts + s.retry.max_backoff * (s.retry.attempts - 1)
        for s in (*rule.steps, *rule.on_failure)
    )
    return min(_MAX_LEASE, total + 10.0)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _done_key(rule: Rule, event: Event) -> str:
    return f"done.{rule.name}.{_digest(event.event_id)}"


def _throttle_key(rule: Rule, bucket: str) -> str:
    return f"throttle.{rule.name}.{_digest(bucket)}"
