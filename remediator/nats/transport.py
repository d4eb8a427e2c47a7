"""NATS streams, consume, publish, ack (connecting is `remediator.nats.connection`).

JetStream mode consumes through a durable *push* consumer with a deliver
group: every replica subscribes to the same deliver subject in one queue
group, so N daemons share one consumer and fail over, and the client hands
messages over without a task per message (nats-py's pull `fetch` is ~4x
slower). `batches` yields what has arrived as one list, so the pipeline
matches a batch in one pass and its acks leave in one socket write (nats-py's
message iterator wakes the loop, and its flusher, once per message). Acks are
explicit; `Inbound` wraps a message with the acks the
daemon may send. Core mode subscribes plainly: at-most-once, nothing to ack.

`prepare` runs at start-up and on every reload: in JetStream mode it extends
the stream and the consumer's filter; in core mode it subscribes to the
patterns the rules now listen on and leaves the ones they no longer do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
)
from nats.js.errors import APIError, NotFoundError

from remediator.engine.limits import DEFAULT_MAX_PAYLOAD, MAX_ID, bounded_id
from remediator.errors import ConfigError, TransportError
from remediator.model import Result
from remediator.nats.audit import AUDIT_STREAM
from remediator.nats.client import printable_subject, valid_subject
from remediator.nats.connection import close, stale, until_answering
from remediator.nats.delivery import Reconnects, delivery_of
from remediator.nats.giveups import GiveUps
from remediator.nats.inbound import DEAD_LETTER_SUBJECT, Inbound, Letter, drain
from remediator.nats.jsconfig import (
    MANAGED,
    OWN_SUBJECTS,
    RESULTS_STREAM,
    RESULTS_SUBJECTS,
    check_replicas,
    in_results,
    stream_config,
)
from remediator.nats.publishing import AckedPublisher, check_message
from remediator.rules.subjects import covers, minimal_cover, overlaps
from remediator.settings import Settings
from remediator.strictjson import dumps

log = logging.getLogger(__name__)

_WEEK = 7 * 24 * 3600.0
_STREAM_CACHE_SECONDS = 30.0
_PUBLISH_TIMEOUT = 5.0


class Transport:
    """Publishing and consuming over one connection; JetStream unless `core`."""

    def __init__(self, nc: Client, settings: Settings) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.acked = AckedPublisher(nc)  # every acknowledged write: results, state, letters
        self.give_ups = GiveUps(nc, self.js, settings.stream, settings.durable)
        self.give_ups.store = self.store_letter
        self.settings = settings
        self._streams: dict[str, tuple[str | None, float]] = {}
        self._results_ready = False  # REMEDIATOR_RESULTS ensured
        self.receiving = False  # subscribed: /readyz must not say ready before this
        self._subscriptions: list[Subscription] = []
        self._core_subs: dict[str, Subscription] = {}
        # What the subscriptions delivered, not yet taken by `batches` (None: stop).
        self._queue: asyncio.Queue[Msg | None] | None = None
        self._replicas_checked: set[str] = set()
        self._reconnects = Reconnects(nc)
        # Told of every result once it is stored, whoever published it (the console's log).
        # Told of each result stored: the result, its JSON and the Nats-Msg-Id it went with.
        self.on_result: Callable[[Result, bytes, str], None] | None = None

    @property
    def core(self) -> bool:
        return self.settings.core

    @property
    def connected(self) -> bool:
        """Connected to a server that answers (not a hung one): acks would arrive."""
        return not stale(self.nc)

    @property
    def deliver_subject(self) -> str:
        return f"_REMEDIATOR.deliver.{self.settings.stream}.{self.settings.durable}"

    async def prepare(self, subjects: Iterable[str]) -> None:
        """Make sure streams and the consumer capture every subject the rules listen on."""
        cover = minimal_cover(subjects)
        self._streams.clear()  # which stream captures a subject may have just changed
        try:
            if self.core:
                if self._queue is not None:  # receiving: follow the new rules at once
                    await self._follow(cover)
                return
            _refuse_own(cover)
            await self._ensure_stream(RESULTS_STREAM, RESULTS_SUBJECTS, max_age=_WEEK)
            self._results_ready = True
            # Alerts are kept a week by default: long enough for `replay`, not forever.
            await self._ensure_stream(self.settings.stream, cover, max_age=_WEEK)
            await self._ensure_consumer(cover)
        except (NatsError, TimeoutError, OSError) as exc:
            raise TransportError(f"preparing streams: {exc or type(exc).__name__}") from exc

    async def batches(self, subjects: Iterable[str]) -> AsyncIterator[list[Inbound]]:
        """Yield what has arrived, as lists in delivery order, until `stop_receiving`.

        One wake-up per batch rather than per message: the client hands every buffered
        message to `_enqueue` in one go, and this drains that queue without awaiting.
        Whatever the caller then sends for a batch (acks, publishes) goes out in one write.
        """
        queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        self._queue = queue
        if self.core:
            await self._follow(minimal_cover(subjects))
        else:
            sub = await self.nc.subscribe(
                self.deliver_subject, queue=self.settings.durable, cb=self._enqueue
            )
            self._subscriptions = [sub, await self.give_ups.subscribe()]
        self.receiving = True
        while True:
            batch, ended = drain(queue, await queue.get())
            if batch:
                if stale(self.nc):  # no new work from a connection that cannot ack it
                    await until_answering(self.nc)
                yield await self._taken(batch)
            if ended:
                return

    async def _taken(self, batch: list[Msg]) -> list[Inbound]:
        taken = [self._inbound(msg) for msg in batch]
        for inbound in taken:
            if inbound.delivery is not None and inbound.delivery.may_be_stale:
                # Its ack timer started long ago (a frozen process): restart it, so it is not
                # handed to another replica while this one looks it up, and maybe runs it.
                await inbound.signal_progress()
        return taken

    async def _follow(self, cover: list[str]) -> None:
        """Core mode: subscribe to new patterns first, then leave old ones (no gap)."""
        for pattern in cover:
            if pattern not in self._core_subs:
                self._core_subs[pattern] = await self.nc.subscribe(
                    pattern, queue=self.settings.durable, cb=self._enqueue
                )
        for pattern in [p for p in self._core_subs if p not in cover]:
            await self._core_subs.pop(pattern).unsubscribe()
        await self.nc.flush()  # the server has the subscriptions once prepare returns

    async def _enqueue(self, msg: Msg) -> None:
        if self._queue is not None:
            self._queue.put_nowait(msg)

    async def stop_receiving(self) -> None:
        """Stop deliveries to this replica; what was buffered is redelivered to another."""
        self.receiving = False
        for sub in [*self._subscriptions, *self._core_subs.values()]:
            await sub.unsubscribe()
        self._subscriptions = []
        self._core_subs = {}
        if self._queue is not None:
            self._queue.put_nowait(None)
            self._queue = None

    def _inbound(self, msg: Msg) -> Inbound:
        delivery = None
        if not self.core and msg.reply:
            delivery = delivery_of(msg, self.settings.ack_wait, self._reconnects)
        inbound = Inbound(
            subject=msg.subject,
            headers=dict(msg.headers or {}),
            data=msg.data,
            delivery=delivery,
            msg=msg,
        )
        if not valid_subject(msg.subject):
            inbound.subject = printable_subject(msg.subject)
            inbound.subject_error = f"subject {inbound.subject!r} is not UTF-8"
        return inbound

    @property
    def max_payload(self) -> int:
        """The largest message (headers plus payload) the server accepts."""
        return int(self.nc.max_payload or DEFAULT_MAX_PAYLOAD)

    async def publish_result(
        self, result: Result, data: bytes | None = None, msg_id: str | None = None
    ) -> None:
        """The result event; `data`, when given, is `result.encode()` done already;
        `msg_id` for a second result of one (event, rule), e.g. after an approval."""
        data = result.encode() if data is None else data
        msg_id = bounded_id(msg_id or f"{result.event_id}:{result.rule}", 2 * MAX_ID)
        headers = {"Nats-Msg-Id": msg_id, "trace-id": result.trace_id}
        await self.publish(f"remediator.results.{result.rule}", data, headers)
        if self.on_result is not None:
            self.on_result(result, data, msg_id)

    async def dead_letter(self, inbound: Inbound, reason: str, error: str, event_id: str) -> None:
        """Publish the dead letter of `inbound`, always small enough to store: the data is
        cut (its `size` and `sha256` say what it was) and so are the headers and error."""
        letter = Letter(inbound.subject, inbound.headers, inbound.data, inbound.delivery)
        await self.store_letter(letter, reason, error, event_id)

    async def store_letter(self, letter: Letter, reason: str, error: str, event_id: str) -> None:
        body = letter.body(reason, error, event_id, self.max_payload)
        headers = {"Nats-Msg-Id": f"deadletter:{bounded_id(event_id)}"}
        await self.publish(DEAD_LETTER_SUBJECT, dumps(body).encode(), headers)

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str]
    ) -> dict[str, object]:
        """Through JetStream, acknowledged, when a stream captures `subject`; else core NATS.

        A message the server would refuse raises Unpublishable and is never sent: the
        server answers it with an error that makes nats-py close the connection for good.
        """
        check_message(subject, data, headers, self.max_payload)
        try:
            if not self.core and await self._stream_for(subject):
                ack = await self.acked.publish(subject, data, headers, _PUBLISH_TIMEOUT)
                return {"stream": ack.stream, "seq": ack.seq}
            await self.nc.publish(subject, data, headers=dict(headers))
            return {}
        except (NatsError, TimeoutError, OSError) as exc:
            raise TransportError(f"publish to {subject}: {exc or type(exc).__name__}") from exc

    async def _stream_for(self, subject: str) -> str | None:
        if self._results_ready and in_results(subject):
            # Ours, ensured by prepare() (no other stream may overlap it): no look-up for
            # each rule's result subject, nor for steps publishing under its subjects.
            return RESULTS_STREAM
        cached = self._streams.get(subject)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            name: str | None = await self.js.find_stream_name_by_subject(subject)
        except NotFoundError:
            name = None
        self._streams[subject] = (name, now + _STREAM_CACHE_SECONDS)
        return name

    async def stored(self, stream: str, sequence: int) -> object | None:
        """The JSON payload of a stored message; None when it is gone (age, limits) or
        not JSON. For people looking at a result, so one request and no retries."""
        try:
            msg = await self.js.get_msg(stream, sequence)
            payload: object = json.loads(msg.data or b"null")
            return payload
        except (NatsError, TimeoutError, ValueError, RecursionError):
            return None

    async def pending(self) -> tuple[int, int]:
        """(pending, ack pending) of the durable consumer, for the backlog gauges."""
        try:
            info = await self.js.consumer_info(self.settings.stream, self.settings.durable)
        except (NatsError, TimeoutError, OSError) as exc:
            raise TransportError(f"consumer info: {exc or type(exc).__name__}") from exc
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)

    async def flush(self) -> None:
        """Wait until the server has every message published so far (core NATS has no ack)."""
        try:
            await self.nc.flush(timeout=5)
        except (NatsError, TimeoutError, OSError) as exc:
            raise TransportError(f"flush: {exc or type(exc).__name__}") from exc

    async def close(self) -> None:
        await close(self.nc)

    async def _ensure_stream(
        self, name: str, subjects: list[str], max_age: float | None = None
    ) -> None:
        try:
            info = await self.js.stream_info(name)
        except NotFoundError:
            await self.js.add_stream(stream_config(name, subjects, self.settings.replicas, max_age))
            log.info("created stream %s for %s", name, ", ".join(subjects))
            return
        if name not in self._replicas_checked:  # once, not on every reload
            self._replicas_checked.add(name)
            check_replicas(name, info.config.num_replicas, self.settings.replicas)
        captured = info.config.subjects or []
        missing = [s for s in subjects if not any(covers(c, s) for c in captured)]
        if not missing:
            return
        if info.config.description != MANAGED:
            raise ConfigError(
                f"stream {name} was not created by remediator and does not capture "
                f"{', '.join(missing)}; add them to it or choose another --stream"
            )
        info.config.subjects = minimal_cover([*captured, *missing])
        await self.js.update_stream(info.config)
        log.info("stream %s now also captures %s", name, ", ".join(missing))

    async def _ensure_consumer(self, subjects: list[str]) -> None:
        """Create or update the durable; replicas starting together converge on one config.

        A new durable reads the stream from its start: no alert published before the
        first daemon came up is lost, and completion records (shared by every durable)
        keep events that already ran from running again.
        """
        for _ in range(3):
            try:
                await self.js.add_consumer(self.settings.stream, self._consumer(subjects))
                return
            except NatsError as exc:
                error = exc  # another replica may have created it a moment ago: try again
        s = self.settings
        where = f"consumer {s.durable} on stream {s.stream}: {error or type(error).__name__}"
        if isinstance(error, APIError) and 400 <= (error.code or 0) < 500:
            raise ConfigError(where)  # refused: a config the server will never take
        raise TransportError(where)  # timed out, or unavailable during an election

    def _consumer(self, subjects: list[str]) -> ConsumerConfig:
        s = self.settings
        return ConsumerConfig(
            durable_name=s.durable,
            deliver_subject=self.deliver_subject,
            deliver_group=s.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait,
            max_deliver=s.max_deliver,
            max_ack_pending=s.max_ack_pending,
            filter_subjects=subjects,
        )


def _refuse_own(cover: Iterable[str]) -> None:
    """A rule listening where remediator's own streams store: JetStream gives a subject
    to one stream only, so the alerts stream could never be made (the server's refusal
    looked like an election, retried for a minute). Say so, once, as a setting error."""
    taken = sorted(p for p in cover if any(overlaps(p, own) for own in OWN_SUBJECTS))
    if taken:
        raise ConfigError(
            f"rules listen on {', '.join(taken)}, where remediator stores its own results, "
            f"dead letters and audit records ({RESULTS_STREAM}, {AUDIT_STREAM}): in "
            "JetStream mode a rule cannot take its events from there. Listen on subjects "
            "of your own (a publish step can send a follow-up event to one), or run --core."
        )
