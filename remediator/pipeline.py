"""The per-message path: receive, decode, match, run, publish results, then ack.

An event that fires nothing (the common case under load) is acked inline in
the receive loop. Anything else runs in a task queued behind the earlier
events of its subject (order within a subject), under the concurrency
limit; each task binds the event's ids for every log line written while it
runs. While events are in flight, one ticker tells the server each is in
progress, so a long script is not redelivered. Nothing is acked before its
results are stored; NATS trouble naks with backoff, and the last delivery
dead-letters.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter

from remediator.engine.engine import Engine, resolving
from remediator.engine.events import decode_event, event_id, trace_id
from remediator.errors import EventError, TransportError, Unpublishable
from remediator.logs import bind_event
from remediator.metrics import Metrics
from remediator.model import Event, Rule
from remediator.nats.transport import Inbound, Transport
from remediator.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Inflight:
    inbound: Inbound
    received: float = field(default_factory=time.monotonic)


class Pipeline:
    """Turns delivered messages into results and acks; one per daemon."""

    def __init__(
        self,
        transport: Transport,
        settings: Settings,
        metrics: Metrics,
        engine: Callable[[], Engine],
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.metrics = metrics
        self.engine = engine  # the engine of the rules in force now
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._inflight: dict[int, Inflight] = {}
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._received: dict[str, Counter] = {}  # events_received children, bound once
        self._ids = random.Random()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def consume(self, subjects: set[str]) -> None:
        async for inbound in self.transport.messages(subjects):
            if inbound.subject in self._tails:
                self._start(inbound, None)  # behind an earlier event of its subject
                continue
            matched = self._match(inbound)
            if matched is not None and not matched[1]:
                await self._ack_quiet(inbound, matched[0])
            else:
                self._start(inbound, matched)

    def _match(self, inbound: Inbound) -> tuple[Event, tuple[Rule, ...]] | None:
        """Decode and match right away; None for what needs the full path (poison, or a
        resolving event, which may close verifications)."""
        try:
            event = self._decode(inbound)
            if resolving(event):
                return None
            return event, self.engine().fired(event)
        except Exception:  # anything else too: the full path dead-letters it; the loop lives
            return None

    async def _ack_quiet(self, inbound: Inbound, event: Event) -> None:
        """The common case under load, an event that fires nothing: ack it here, with no
        task, no slot and no ordering queue (nothing of its subject is in flight)."""
        self._count_received(inbound.subject)
        if event.redelivered:
            self.metrics.redeliveries.inc()
        try:
            await inbound.ack()
        except Exception as exc:  # the server redelivers after ack_wait
            log.warning("ack failed for %s: %s", event.event_id, exc)
        self.metrics.event_duration.observe(0.0)

    def _decode(self, inbound: Inbound) -> Event:
        return decode_event(
            inbound.subject, inbound.headers, inbound.data, inbound.delivery, self.new_trace_id
        )

    def _count_received(self, subject: str) -> None:
        root = subject.split(".", 1)[0]
        child = self._received.get(root)
        if child is None:
            child = self._received[root] = self.metrics.events_received.labels(root)
        child.inc()

    def new_trace_id(self) -> str:
        """Trace ids need to be unique, not secret: no system call per event."""
        return f"{self._ids.getrandbits(128):032x}"

    def _start(self, inbound: Inbound, matched: tuple[Event, tuple[Rule, ...]] | None) -> None:
        """Queue the message behind the earlier ones of its subject (order within a subject)."""
        key = id(inbound)
        self._inflight[key] = Inflight(inbound)
        self.metrics.inflight.inc()
        previous = self._tails.get(inbound.subject)
        task = asyncio.create_task(self._handle(inbound, previous, matched))
        self._tails[inbound.subject] = task
        task.add_done_callback(lambda t: self._finished(key, inbound.subject, t))

    def _finished(self, key: int, subject: str, task: asyncio.Task[None]) -> None:
        entry = self._inflight.pop(key, None)
        self.metrics.inflight.dec()
        if entry is not None:
            self.metrics.event_duration.observe(time.monotonic() - entry.received)
        if self._tails.get(subject) is task:
            del self._tails[subject]

    async def _handle(
        self,
        inbound: Inbound,
        previous: asyncio.Task[None] | None,
        matched: tuple[Event, tuple[Rule, ...]] | None,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        engine = self.engine()  # in flight, an event keeps the rules it started with
        async with self._slots:
            try:
                await self._process(inbound, engine, matched)
            except Exception:
                log.exception("unexpected error on %s; will be redelivered", inbound.subject)
                await self._retry_later(inbound, "", "internal error")

    async def _process(
        self, inbound: Inbound, engine: Engine, matched: tuple[Event, tuple[Rule, ...]] | None
    ) -> None:
        self._count_received(inbound.subject)
        try:
            event, rules = matched if matched is not None else (self._decode(inbound), None)
        except EventError as exc:
            poison_id = event_id(inbound.subject, inbound.headers, inbound.data, inbound.delivery)
            bind_event(trace_id(inbound.headers, {}) or self.new_trace_id(), poison_id)
            await self._dead_letter(inbound, exc.reason, str(exc), poison_id)
            return
        bind_event(event.trace_id, event.event_id)
        if event.redelivered:
            self.metrics.redeliveries.inc()
        try:
            # Guards and results both need NATS: if it is away, nothing is acked.
            for result in await engine.process(event, rules):
                await self.transport.publish_result(result)
            await inbound.ack()
        except Unpublishable as exc:  # no retry can store it: do not re-run its steps
            await self._dead_letter(inbound, "unpublishable", str(exc), event.event_id)
        except TransportError as exc:
            log.warning(
                "event %s: NATS trouble, will retry: %s",
                event.event_id,
                exc,
                extra=_event_extra(event),
            )
            await self._retry_later(inbound, event.event_id, str(exc))

    async def _dead_letter(self, inbound: Inbound, reason: str, error: str, event_id: str) -> None:
        log.warning("dead letter (%s) from %s: %s", reason, inbound.subject, error)
        try:
            await self.transport.dead_letter(inbound, reason, error, event_id)
            await inbound.term()
            self.metrics.dead_letters.labels(reason).inc()
        except TransportError as exc:
            log.warning("cannot publish dead letter: %s", exc)
            await self._nak(inbound)

    async def _retry_later(self, inbound: Inbound, event_id: str, error: str) -> None:
        """Infrastructure failure: nak with backoff, or dead-letter on the last delivery."""
        delivery = inbound.delivery
        if delivery is not None and delivery.num_delivered >= self.settings.max_deliver:
            await self._dead_letter(inbound, "infrastructure", error, event_id)
            return
        await self._nak(inbound)

    async def _nak(self, inbound: Inbound) -> None:
        attempts = inbound.delivery.num_delivered if inbound.delivery else 1
        try:
            await inbound.nak(delay=min(30.0, 2.0**attempts))
        except Exception as exc:  # the server redelivers after ack_wait anyway
            log.warning("nak failed: %s", exc)

    async def tick_in_progress(self) -> None:
        """Keep long runs from redelivery: +WPI for every message older than a third of ack_wait."""
        interval = max(0.2, self.settings.ack_wait / 3)
        while True:
            await asyncio.sleep(interval)
            horizon = time.monotonic() - interval
            for entry in list(self._inflight.values()):
                if entry.received < horizon:
                    try:
                        await entry.inbound.in_progress()
                    except Exception as exc:
                        log.debug("in-progress signal failed: %s", exc)

    async def drain(self) -> None:
        tasks = list(self._tails.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.settings.drain_timeout)
        for task in pending:  # unfinished: not acked, so the server redelivers it
            task.cancel()
        if pending:
            log.warning("drain timeout: %d events left unacked for redelivery", len(pending))


def _event_extra(event: Event) -> dict[str, object]:
    return {"trace_id": event.trace_id, "event_id": event.event_id}
