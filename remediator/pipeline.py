"""The event path: receive a batch, decode, match, run, publish results, then ack.

Messages arrive as batches (what the subscription had buffered), matched in
one pass with no await that waits on the network. An event that fires
nothing (the common case under load) is acked inline in that pass, its ack
unconfirmed and written with the batch's others, unless an earlier event of
its ordering key is still in flight. Anything else runs in a task queued
behind the earlier events of its ordering key (`ordering`; by default the
alert's fingerprint, else the subject), under the concurrency limit; events
of different keys run side by side. Each task binds the event's ids for
every log line written while it runs. While events are in flight, one ticker
tells the server each is in progress, so a long script is not redelivered.
Nothing is acked before its results are stored; NATS trouble naks with
backoff, and the last delivery dead-letters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import Counter

from remediator.engine.engine import Engine
from remediator.engine.events import decode_event, derived_trace_id, event_id, trace_id
from remediator.engine.ordering import KeyedQueue, OrderKey
from remediator.engine.rulecontext import resolving
from remediator.errors import EventError, TransportError, Unpublishable
from remediator.logs import bind_event
from remediator.metrics import Metrics
from remediator.model import Event, Rule
from remediator.nats.inbound import Inbound
from remediator.nats.transport import Transport
from remediator.settings import Settings

log = logging.getLogger(__name__)

_HOLD_FIRST = 0.5  # seconds before storing a dead letter is tried again; doubles
_HOLD_MAX = 10.0
SUBJECT_ROOTS = 100  # distinct subject roots counted apart in events_received


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
        order_key: OrderKey | None = None,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.metrics = metrics
        self.engine = engine  # the engine of the rules in force now
        self.order_key = order_key if order_key is not None else OrderKey(None)
        self._queue = KeyedQueue()
        self._inflight: dict[int, Inflight] = {}
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._received: dict[str, Counter] = {}  # events_received children, bound once
        transport.give_ups.on_stored = self._count_dead_letter
        # Read when scraped, not moved twice per event (a lock per move).
        metrics.inflight.set_function(lambda: len(self._inflight))

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def consume(self, subjects: set[str]) -> None:
        async for batch in self.transport.batches(subjects):
            self._count_received(i.subject for i in batch)
            for inbound in batch:
                await self._take(inbound)
            # Nothing above waited on the network: the batch's acks leave in one write, and
            # the tasks just started send their first writes together when they run.

    async def _take(self, inbound: Inbound) -> None:
        """Match one message of a batch; ack it at once if it fires nothing."""
        try:
            event = self._decode(inbound)
            key = self.order_key.of(event, self._context)
            if self._queue.busy(key) or resolving(event):
                # Behind an earlier event of its key; or a resolving event, which may
                # close verifications: both take the full path, matched in their turn.
                self._start(inbound, event, None, key)
                return
            rules = self.engine().fired(event)
        except Exception:  # poison, or worse: its task dead-letters it; the loop lives
            self._start(inbound, None, None, None)
            return
        if rules:
            self._start(inbound, event, rules, key)
        else:
            await self._ack_quiet(inbound, event)

    def _context(self, event: Event) -> Mapping[str, object]:
        return self.engine().context(event)

    async def _ack_quiet(self, inbound: Inbound, event: Event) -> None:
        """The common case under load, an event that fires nothing: ack it here, with no
        task, no slot and no ordering queue (nothing of its key is in flight)."""
        if event.redelivered:
            self.metrics.redeliveries.inc()
        try:
            # Not confirmed, not flushed here: a lost ack costs a redelivery that matches
            # nothing again, and the batch's acks share one write.
            await inbound.ack()
        except Exception as exc:  # the server redelivers after ack_wait
            log.warning("ack failed for %s: %s", event.event_id, exc)
        self.metrics.event_duration.observe(0.0)

    def _decode(self, inbound: Inbound) -> Event:
        if inbound.subject_error is not None:
            raise EventError("invalid_subject", inbound.subject_error)
        return decode_event(inbound.subject, inbound.headers, inbound.data, inbound.delivery)

    def _count_received(self, subjects: Iterable[str]) -> None:
        """`events_received_total` by subject root: one increment per root and batch (the
        client library takes a lock per call), counted as the batch arrives."""
        roots: dict[str, int] = {}
        for subject in subjects:
            root = subject.split(".", 1)[0]
            roots[root] = roots.get(root, 0) + 1
        for root, count in roots.items():
            child = self._received.get(root)
            if child is None:
                # The root comes from the publisher (a rule on `>` takes any): past a cap,
                # one series "other", so a publisher cannot grow the metrics without bound.
                label = root if len(self._received) < SUBJECT_ROOTS else "other"
                child = self._received.get(label) or self.metrics.events_received.labels(label)
                self._received[label] = child  # keyed by the label: the dict is bounded too
            child.inc(count)

    def _start(
        self,
        inbound: Inbound,
        event: Event | None,
        rules: tuple[Rule, ...] | None,
        key: str | None,
    ) -> None:
        """Queue the message behind the earlier ones of its ordering key."""
        entry = Inflight(inbound)
        self._inflight[id(inbound)] = entry
        task = self._queue.start(
            key, lambda previous: asyncio.create_task(self._handle(inbound, previous, event, rules))
        )
        task.add_done_callback(lambda _: self._finished(id(inbound), entry))

    def _finished(self, key: int, entry: Inflight) -> None:
        self._inflight.pop(key, None)
        self.metrics.event_duration.observe(time.monotonic() - entry.received)

    async def _handle(
        self,
        inbound: Inbound,
        previous: asyncio.Task[None] | None,
        event: Event | None,
        rules: tuple[Rule, ...] | None,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        engine = self.engine()  # in flight, an event keeps the rules it started with
        async with self._slots:
            try:
                await self._process(inbound, engine, event, rules)
            except Exception:
                log.exception("unexpected error on %s; will be redelivered", inbound.subject)
                await self._retry_later(inbound, "", "internal error")

    async def _process(
        self,
        inbound: Inbound,
        engine: Engine,
        event: Event | None,
        rules: tuple[Rule, ...] | None,
    ) -> None:
        try:
            event = event if event is not None else self._decode(inbound)
        except EventError as exc:
            poison_id = event_id(inbound.subject, inbound.headers, inbound.data, inbound.delivery)
            bind_event(trace_id(inbound.headers, {}) or derived_trace_id(poison_id), poison_id)
            await self._dead_letter(inbound, exc.reason, str(exc), poison_id)
            return
        bind_event(event.trace_id, event.event_id)
        if event.redelivered:
            self.metrics.redeliveries.inc()
        try:
            # Guards and results both need NATS: if it is away, nothing is acked.
            results = await engine.process(event, rules)  # the engine reports each...
            if engine.report is None:  # ...unless it was built without a report
                for result in results:
                    await self.transport.publish_result(result)
        except Unpublishable as exc:  # no retry can store it: do not re-run its steps
            await self._dead_letter(inbound, "unpublishable", str(exc), event.event_id)
            return
        except TransportError as exc:
            log.warning(
                "event %s: NATS trouble, will retry: %s",
                event.event_id,
                exc,
                extra=_event_extra(event),
            )
            await self._retry_later(inbound, event.event_id, str(exc))
            return
        # A plain ack, written with the others of this loop turn: one lost (a consumer
        # leader failing over) costs a redelivery after ack_wait, which finds the stored
        # results of its rules and runs nothing again.
        try:
            await inbound.ack()
        except Exception as exc:  # the server redelivers after ack_wait
            log.warning("ack failed for %s: %s", event.event_id, exc)

    async def _dead_letter(self, inbound: Inbound, reason: str, error: str, event_id: str) -> None:
        """Store the dead letter, then terminate the message. If it cannot be stored, the
        message is held (in flight, so the ticker keeps it in progress) and storing is
        tried again: a nak on the last delivery would drop it without a trace."""
        log.warning("dead letter (%s) from %s: %s", reason, inbound.subject, error)
        pause = _HOLD_FIRST
        while True:
            try:
                await self.transport.dead_letter(inbound, reason, error, event_id)
                break
            except TransportError as exc:
                log.warning(
                    "cannot store dead letter; holding the message, retry in %gs: %s", pause, exc
                )
            await asyncio.sleep(pause)
            pause = min(_HOLD_MAX, pause * 2)
        self.metrics.dead_letters.labels(reason).inc()
        try:
            await inbound.term()
        except Exception as exc:  # stored already; a redelivery dead-letters it again (same id)
            log.warning("term failed: %s", exc)

    def _count_dead_letter(self, reason: str) -> None:
        self.metrics.dead_letters.labels(reason).inc()

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
        tasks = self._queue.tasks()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.settings.drain_timeout)
        for task in pending:  # unfinished: not acked, so the server redelivers it
            task.cancel()
        if pending:
            log.warning("drain timeout: %d events left unacked for redelivery", len(pending))


def _event_extra(event: Event) -> dict[str, object]:
    return {"trace_id": event.trace_id, "event_id": event.event_id}
