"""Approvals at the NATS edge: filing requests, and acting once a human has decided.

`NatsDesk` is the engine's `ApprovalDesk`: it stores a request in the control
bucket and publishes it on `remediator.approvals.<rule>`. `ApprovalWorker`
runs on every replica and follows each request the watcher sees to its end,
one compare-and-set at a time, so whatever the number of replicas exactly one
acts on each step:

- pending past its expiry: moved to `expired` (a late approval then loses);
- approved: held while a pause covers the rule or the request's throttle key;
  expired with a reason when the rule's definition changed since the request
  was made (its digest) or no replica has loaded the rule for a minute; else
  claimed (`running`, with this replica's id and the time), the steps run
  through the engine holding the throttle key's lease (`engine.leases`), the
  result is published, then `done`; a claim
  older than its lease belongs to a replica that died mid-run and is taken
  over (the steps may then run twice: at-least-once, as for any crash mid-run);
- denied or expired: the result (`denied` / `expired`, the latter with an
  escalation `reason: approval_expired`) is published, then `done`. Results
  carry their own `Nats-Msg-Id`, so two replicas racing here publish once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from remediator.engine.control import ApprovalRequest, PauseView, expire
from remediator.engine.engine import Engine
from remediator.engine.leases import hold
from remediator.engine.state import Conflict
from remediator.engine.verification import ESCALATIONS
from remediator.errors import TransportError
from remediator.metrics import Metrics
from remediator.model import Result, Rule
from remediator.nats.control import Control
from remediator.nats.transport import Transport

log = logging.getLogger(__name__)

APPROVALS_SUBJECT = "remediator.approvals"
TICK = 1.0  # seconds between looks for expired requests when nothing changes
_LEASE_SLACK = 60.0


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


@dataclass(slots=True)
class NatsDesk:
    """Stores a request in the control bucket and announces it."""

    control: Control
    transport: Transport
    base_url: str
    metrics: Metrics | None = None

    def url(self, request_id: str) -> str:
        return f"{self.base_url.rstrip('/')}/#/approvals/{request_id}"

    async def open(self, request: ApprovalRequest) -> ApprovalRequest:
        request = request.with_(url=self.url(request.id))
        stored = await self.control.create(request)
        body = json.dumps(stored.summary(), default=str).encode()
        headers = {"Nats-Msg-Id": f"approval:{stored.id}", "trace-id": stored.trace_id}
        await self.transport.publish(f"{APPROVALS_SUBJECT}.{stored.rule}", body, headers)
        if stored is request and self.metrics is not None:
            self.metrics.approvals.labels(request.rule, "requested").inc()
        return stored


@dataclass(slots=True)
class ApprovalWorker:
    """Follows every request to `done` on this replica; the bucket decides who acts."""

    control: Control
    transport: Transport
    engine: Callable[[], Engine]
    requests: Callable[[], Iterable[tuple[ApprovalRequest, int]]]
    identity: str
    pauses: PauseView | None = None
    metrics: Metrics | None = None
    clock: Callable[[], float] = time.time
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    _busy: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _told: set[str] = field(default_factory=set)  # requests whose hold was logged

    async def run(self) -> None:
        """On every change (and every TICK for expiries) follow each request, one task per
        request, so a long approved run does not hold back the others."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), TICK)
            self.wake.clear()
            for request, revision in list(self.requests()):
                if request.state == "done" or request.id in self._busy:
                    continue
                task = asyncio.create_task(self._follow(request, revision))
                self._busy[request.id] = task
                task.add_done_callback(functools.partial(self._done, request.id))

    def _done(self, request_id: str, _: asyncio.Task[None]) -> None:
        self._busy.pop(request_id, None)
        self.wake.set()  # look again: the request may have moved while we worked

    async def _follow(self, request: ApprovalRequest, revision: int) -> None:
        try:
            await self.follow(request, revision)
        except Conflict:
            pass  # another replica moved it first; the watcher shows us how
        except TransportError as exc:
            log.warning("approval %s: NATS trouble, will retry: %s", request.id, exc)
        except Exception:
            log.exception("approval %s: unexpected error; will retry", request.id)

    async def follow(self, request: ApprovalRequest, revision: int) -> None:
        now = self.clock()
        if request.state == "pending" and request.expires_at <= now:
            await self.control.move(request, revision, expire(request, now))
        elif request.state in ("denied", "expired"):
            await self._close(request, revision)
        elif request.state == "approved" or self._abandoned(request, now):
            await self._run(request, revision)

    def _abandoned(self, request: ApprovalRequest, now: float) -> bool:
        if request.state != "running" or request.claimed_at is None:
            return False
        rule = self._rule(request.rule)
        return now - request.claimed_at > _lease(rule)

    def _rule(self, name: str) -> Rule | None:
        return next((r for r in self.engine().index.rules if r.name == name), None)

    async def _run(self, request: ApprovalRequest, revision: int) -> None:
        rule = self._rule(request.rule)
        if (gone := self._gone(request, rule)) is not None:
            await self.control.move(request, revision, expire(request, self.clock(), gone))
            return
        if rule is None or self._held(rule, request):
            # Not loaded here (a rollout in progress): a replica that has the rule runs it.
            # Paused (all, the rule, or its throttle key): approved runs wait for the lift.
            return
        request, revision = await self.control.request(request.id)  # whole: with its event
        fresh = request.state == "approved" or self._abandoned(request, self.clock())
        if not fresh:
            return  # moved meanwhile (another replica claimed it): the watcher shows us how
        whole = await self._with_event(request)
        if whole is None:
            why = f"event {request.event_id} is no longer in stream {request.origin}"
            await self.control.move(request, revision, expire(request, self.clock(), why))
            return
        claimed = request.with_(state="running", claimed_by=self.identity, claimed_at=self.clock())
        revision = await self.control.move(request, revision, claimed)
        self._told.discard(request.id)
        if request.state == "approved" and self.metrics is not None:
            self.metrics.approvals.labels(request.rule, "approved").inc()
        if request.state == "running":
            log.warning("approval %s: taking over a run left by %s", request.id, request.claimed_by)
        result = await self._leased_run(rule, whole)
        await self.transport.publish_result(result, msg_id=f"{result.event_id}:{result.rule}:run")
        done = claimed.with_(state="done", outcome=result.status)
        await self.control.move(claimed, revision, done)

    async def _with_event(self, request: ApprovalRequest) -> ApprovalRequest | None:
        """The request with its event, read back from its stream when it was too big to
        store in the request (for the run only: never written back to the bucket)."""
        if request.origin is None:
            return request
        payload = await self.transport.stored(*request.origin)
        return request.with_(payload=payload) if isinstance(payload, dict) else None

    async def _leased_run(self, rule: Rule, request: ApprovalRequest) -> Result:
        """The run, holding its throttle key's lease: no other run of that key beside it."""
        engine = self.engine()
        if engine.guards is None:
            return await engine.run_approved(rule, request)
        admission = await hold(engine.guards, rule, request.throttle_key)
        try:
            return await engine.run_approved(rule, request)
        finally:
            await engine.guards.release(admission)

    def _gone(self, request: ApprovalRequest, rule: Rule | None) -> str | None:
        """Why what was approved can no longer run, or None: the rule changed since the
        request was made, or no replica has loaded it for a while (removed)."""
        if rule is not None:
            changed = request.rule_digest and rule.digest and rule.digest != request.rule_digest
            if changed:
                return f"rule {request.rule} changed since the request was made; ask again"
            return None
        decided = request.decided_at if request.decided_at is not None else request.created_at
        if request.state == "approved" and self.clock() - decided > _LEASE_SLACK:
            return f"rule {request.rule} is no longer loaded"
        return None

    def _held(self, rule: Rule, request: ApprovalRequest) -> bool:
        pause = None if self.pauses is None else self.pauses.paused(rule.name, request.throttle_key)
        if pause is not None and request.id not in self._told:
            self._told.add(request.id)  # once, not every tick
            log.info(
                "approval %s of rule %s: approved, held: %s",
                request.id,
                rule.name,
                pause.describe(),
            )
        return pause is not None

    async def _close(self, request: ApprovalRequest, revision: int) -> None:
        status = request.state
        if status == "denied":
            why = f"denied by {request.decided_by}" + (
                f": {request.comment}" if request.comment else ""
            )
        elif request.reason:
            why = request.reason
        else:
            why = "no decision before " + _at(request.expires_at).isoformat(timespec="seconds")
        result = self._closing(request, status, why)
        await self.transport.publish_result(
            result, msg_id=f"{result.event_id}:{result.rule}:{status}"
        )
        if status == "expired":
            await self._escalate(request, why)
        await self.control.move(request, revision, request.with_(state="done", outcome=status))
        if self.metrics is not None:
            self.metrics.approvals.labels(request.rule, status).inc()
            self.metrics.rule_results.labels(request.rule, status).inc()
            if status == "expired":
                self.metrics.escalations.labels("approval_expired").inc()
        log.info("approval %s of rule %s: %s", request.id, request.rule, status)

    def _closing(self, request: ApprovalRequest, status: str, why: str) -> Result:
        return Result(
            event_id=request.event_id,
            trace_id=request.trace_id,
            rule=request.rule,
            subject=request.subject,
            status=status,
            started_at=_at(request.created_at),
            finished_at=_at(self.clock()),
            reason=why,
            approval=request.approval(),
        )

    async def _escalate(self, request: ApprovalRequest, why: str) -> None:
        body = {
            "reason": "approval_expired",
            "rule": request.rule,
            "key": None,
            "detail": why,
            "approval_id": request.id,
            "event_id": request.event_id,
            "trace_id": request.trace_id,
            "subject": request.subject,
        }
        headers = {"Nats-Msg-Id": f"approval_expired:{request.id}", "trace-id": request.trace_id}
        await self.transport.publish(ESCALATIONS, json.dumps(body).encode(), headers)


def _lease(rule: Rule | None) -> float:
    """How long a claimed run may take before another replica takes it over."""
    if rule is None:
        return _LEASE_SLACK
    steps = rule.steps + rule.on_failure
    return _LEASE_SLACK + sum(
        s.timeout * s.retry.attempts + s.retry.max_backoff * (s.retry.attempts - 1) for s in steps
    )
