"""NATS streams, consume, publish, ack (connecting is `remediator.nats.connection`).

JetStream mode consumes through a durable *push* consumer with a deliver
group: every replica subscribes to the same deliver subject in one queue
group, so N daemons share one consumer and fail over, and the client hands
messages over without a task per message (nats-py's pull `fetch` is ~4x
slower). Acks are explicit; `Inbound` wraps a message with the acks the
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
from dataclasses import dataclass

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
from remediator.errors import ConfigError, TransportError, Unpublishable
from remediator.model import Delivery, Result
from remediator.nats.connection import close, stale, until_answering
from remediator.nats.deadletter import dead_letter_body
from remediator.nats.delivery import Reconnects, delivery_of
from remediator.nats.jsconfig import MANAGED, check_replicas, stream_config
from remediator.rules.subjects import covers, minimal_cover
from remediator.settings import Settings

log = logging.getLogger(__name__)

RESULTS_STREAM = "REMEDIATOR_RESULTS"
RESULTS_SUBJECTS = ["remediator.>"]
_RESULTS_PREFIX = "remediator."
DEAD_LETTER_SUBJECT = "remediator.deadletter"
_WEEK = 7 * 24 * 3600.0
_STREAM_CACHE_SECONDS = 30.0
_PUBLISH_TIMEOUT = 5.0


@dataclass(slots=True)
class Inbound:
    """One received message and the acks the daemon may send for it."""

    subject: str
    headers: dict[str, str]
    data: bytes
    delivery: Delivery | None
    msg: Msg

    async def ack(self) -> None:
        if self.delivery is not None:
            await self.msg.ack()

    async def ack_confirmed(self, within: float) -> bool:
        """Ack and wait for the server to confirm it, trying again while it does not
        (a consumer leader failing over drops acks): a lost ack costs a full ack_wait
        before the redelivery is recognised as done. False if never confirmed."""
        if self.delivery is None:
            return True
        deadline = time.monotonic() + within
        pause = 0.1
        while True:
            try:
                await self.msg.ack_sync(timeout=min(2.0, within))
                return True
            except (NatsError, TimeoutError, OSError) as exc:
                if time.monotonic() + pause > deadline:
                    log.warning("ack not confirmed: %s", exc or type(exc).__name__)
                    return False
            await asyncio.sleep(pause)
            pause = min(2.0, pause * 2)

    async def nak(self, delay: float) -> None:
        if self.delivery is not None:
            await self.msg.nak(delay=delay)

    async def term(self) -> None:
        if self.delivery is not None:
            await self.msg.term()

    async def in_progress(self) -> None:
        if self.delivery is not None:
            await self.msg.in_progress()

    async def signal_progress(self) -> None:
        """`in_progress`, where a failure only costs an earlier redelivery."""
        try:
            await self.in_progress()
        except NatsError as exc:
            log.debug("in-progress signal failed: %s", exc)


class Transport:
    """Publishing and consuming over one connection; JetStream unless `core`."""

    def __init__(self, nc: Client, settings: Settings) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.settings = settings
        self._streams: dict[str, tuple[str | None, float]] = {}
        self._results_ready = False  # REMEDIATOR_RESULTS ensured: it captures remediator.>
        self.receiving = False  # subscribed: /readyz must not say ready before this
        self._subscriptions: list[Subscription] = []
        self._core_subs: dict[str, Subscription] = {}
        self._core_queue: asyncio.Queue[Msg | None] | None = None
        self._replicas_checked: set[str] = set()
        self._reconnects = Reconnects(nc)
        # Told of every result once it is stored, whoever published it (the console's log).
        self.on_result: Callable[[Result], None] | None = None

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
                if self._core_queue is not None:  # receiving: follow the new rules at once
                    await self._follow(cover)
                return
            await self._ensure_stream(RESULTS_STREAM, RESULTS_SUBJECTS, max_age=_WEEK)
            self._results_ready = True
            # Alerts are kept a week by default: long enough for `replay`, not forever.
            await self._ensure_stream(self.settings.stream, cover, max_age=_WEEK)
            await self._ensure_consumer(cover)
        except (NatsError, TimeoutError, OSError) as exc:
            raise TransportError(f"preparing streams: {exc or type(exc).__name__}") from exc

    async def messages(self, subjects: Iterable[str]) -> AsyncIterator[Inbound]:
        """Yield messages until `stop_receiving` is called."""
        if self.core:
            queue: asyncio.Queue[Msg | None] = asyncio.Queue()
            self._core_queue = queue
            await self._follow(minimal_cover(subjects))
            self.receiving = True
            while (msg := await queue.get()) is not None:
                yield self._inbound(msg)
            return
        sub = await self.nc.subscribe(self.deliver_subject, queue=self.settings.durable)
        self._subscriptions = [sub]
        self.receiving = True
        async for msg in sub.messages:
            if stale(self.nc):  # no new work from a connection that cannot ack it
                await until_answering(self.nc)
            inbound = self._inbound(msg)
            if inbound.delivery is not None and inbound.delivery.may_be_stale:
                # Its ack timer started long ago (a frozen process): restart it, so it is not
                # handed to another replica while this one looks it up, and maybe runs it.
                await inbound.signal_progress()
            yield inbound

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
        if self._core_queue is not None:
            self._core_queue.put_nowait(msg)

    async def stop_receiving(self) -> None:
        """Stop deliveries to this replica; what was buffered is redelivered to another."""
        self.receiving = False
        for sub in [*self._subscriptions, *self._core_subs.values()]:
            await sub.unsubscribe()
        self._subscriptions = []
        self._core_subs = {}
        if self._core_queue is not None:
            self._core_queue.put_nowait(None)
            self._core_queue = None

    def _inbound(self, msg: Msg) -> Inbound:
        delivery = None
        if not self.core and msg.reply:
            delivery = delivery_of(msg, self.settings.ack_wait, self._reconnects)
        return Inbound(
            subject=msg.subject,
            headers=dict(msg.headers or {}),
            data=msg.data,
            delivery=delivery,
            msg=msg,
        )

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
            self.on_result(result)

    async def dead_letter(self, inbound: Inbound, reason: str, error: str, event_id: str) -> None:
        """Publish the dead letter of `inbound`, always small enough to store."""
        body = dead_letter_body(inbound, reason, error, event_id, self.max_payload)
        headers = {"Nats-Msg-Id": f"deadletter:{bounded_id(event_id)}"}
        await self.publish(DEAD_LETTER_SUBJECT, body, headers)

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str]
    ) -> dict[str, object]:
        """Through JetStream, acknowledged, when a stream captures `subject`; else core NATS.

        A message the server would refuse raises Unpublishable and is never sent: the
        server answers it with an error that makes nats-py close the connection for good.
        """
        self._check_size(subject, data, headers)
        try:
            if not self.core and await self._stream_for(subject):
                # publish_async shares one reply subscription: cheaper than a request each.
                future = await self.js.publish_async(subject, data, headers=dict(headers))
                async with asyncio.timeout(_PUBLISH_TIMEOUT):
                    ack = await future
                return {"stream": ack.stream, "seq": ack.seq}
            await self.nc.publish(subject, data, headers=dict(headers))
            return {}
        except (NatsError, TimeoutError, OSError) as exc:
            raise TransportError(f"publish to {subject}: {exc or type(exc).__name__}") from exc

    def _check_size(self, subject: str, data: bytes, headers: Mapping[str, str]) -> None:
        try:
            # NATS/1.0 CRLF, then `Key: value` CRLF per header, then a closing CRLF.
            size = len(data) + 12 + sum(len(f"{k}: {v}\r\n".encode()) for k, v in headers.items())
            subject.encode()
        except UnicodeError as exc:
            raise Unpublishable(f"publish to {subject!r}: not valid text: {exc}") from exc
        if size > self.max_payload:
            raise Unpublishable(
                f"publish to {subject}: {size} bytes (headers and payload) over the "
                f"server's max_payload of {self.max_payload}"
            )

    async def _stream_for(self, subject: str) -> str | None:
        if self._results_ready and subject.startswith(_RESULTS_PREFIX):
            # Ours, ensured by prepare() (no other stream may overlap it): no look-up for
            # each rule's result subject, nor for steps publishing under remediator.
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
