"""Every write checked before it is sent, and JetStream publishes acknowledged without
leaking anything when one fails.

What the server would refuse is never sent: a message over its `max_payload`
(headers included), a subject past its control-line limit, a header with a line
break. The server answers such a message with an error that makes nats-py
close the connection for good (the daemon exits, its supervisor restarts it,
the same message comes back: a crash loop). `check_message` raises
Unpublishable instead, which a step reports as failed, the webhook as 4xx and
the pipeline as a dead letter.

`AckedPublisher` replaces nats-py's `publish_async`, which takes one of its
4,000 slots before publishing and never returns it when the publish raises
(a full buffer during a reconnect, a closed connection), and waits for a slot
with no deadline: a few thousand failures and every later write hung, acks
and SIGTERM included. Here a slot is held by `async with`, always returned,
and everything, the wait for a slot included, runs under one deadline. Acks
come back on one shared reply subscription, as with `publish_async`.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Mapping

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from remediator.engine.limits import DEFAULT_MAX_PAYLOAD
from remediator.errors import Unpublishable
from remediator.rules.subjects import publish_problem

MAX_PENDING = 4000  # acks awaited at once; a writer past it waits, within its deadline
SWEEP_EVERY = 0.1  # seconds between looks for writes past their deadline
STALLED_AFTER = 30.0  # seconds of writes failing, none succeeding: the daemon is not ready
_HEADER_LINE = 4  # ": " and CRLF around each header
_HEADER_KEY = re.compile(r"[^:\s]+")  # a header name: no colon, no white space


def max_payload_of(js: JetStreamContext) -> int:
    """The server's max_payload: nats-py keeps it on the connection, which a JetStream
    context (and so a bucket) reaches through a private attribute only."""
    return int(js._nc.max_payload or DEFAULT_MAX_PAYLOAD)


def check_message(subject: str, data: bytes, headers: Mapping[str, str], max_payload: int) -> None:
    """Raise Unpublishable for a message the server would refuse (and close for)."""
    if (problem := publish_problem(subject)) is not None:
        shown = subject[:80] + ("..." if len(subject) > 80 else "")
        raise Unpublishable(f"publish to {shown!r}: the subject is {problem}")
    size = len(data) + (12 if headers else 0)  # NATS/1.0 CRLF ... CRLF
    for key, value in headers.items():
        try:
            size += len(key.encode()) + len(value.encode()) + _HEADER_LINE
        except UnicodeEncodeError as exc:
            raise Unpublishable(f"publish to {subject}: header {key!r} is not text") from exc
        if not _HEADER_KEY.fullmatch(key) or _breaks(value):
            raise Unpublishable(f"publish to {subject}: header {key!r} cannot be sent as is")
    if size > max_payload:
        raise Unpublishable(
            f"publish to {subject}: {size} bytes (headers and payload) over the "
            f"server's max_payload of {max_payload}"
        )


def _breaks(value: str) -> bool:
    return "\r" in value or "\n" in value


class AckedPublisher:
    """JetStream publishes acknowledged through one reply subscription, with bounded
    slots that are always given back.

    A write's deadline is kept beside its future and enforced by one sweep a tenth of a
    second apart, not by a timer per write (a timeout context per write was 6% of a
    firing daemon): only the rare waits, for a slot or the first subscription, take
    one. The write itself cannot hang: the client's flush_timeout bounds a full buffer.
    """

    def __init__(self, nc: Client, max_pending: int = MAX_PENDING) -> None:
        self.nc = nc
        self._slots = asyncio.Semaphore(max_pending)
        self._waiting: dict[str, tuple[asyncio.Future[PubAck], float]] = {}
        self._tokens = itertools.count()
        self._prefix: str | None = None
        self._subscribing = asyncio.Lock()  # the first writers at once: one subscription
        self._failing_since: float | None = None  # no write has succeeded since then
        self._sweep: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> int:
        """Acks awaited now (tests check that failures leave none behind)."""
        return len(self._waiting)

    def stalled(self, now: float | None = None) -> bool:
        """Writes have failed for STALLED_AFTER seconds and none succeeded meanwhile: no
        result, record or dead letter is being stored, so no event can finish here."""
        now = time.monotonic() if now is None else now
        return self._failing_since is not None and now - self._failing_since > STALLED_AFTER

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str], timeout: float
    ) -> PubAck:
        """Publish and await the stream's ack; TimeoutError past `timeout` seconds."""
        try:
            ack = await self._publish(subject, data, headers, timeout)
        except Exception:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            raise
        self._failing_since = None
        return ack

    async def _publish(
        self, subject: str, data: bytes, headers: Mapping[str, str], timeout: float
    ) -> PubAck:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._slots.locked():  # the rare wait for a slot: under a timer
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        else:
            await self._slots.acquire()  # free: returns at once
        try:
            prefix = self._prefix
            if prefix is None:  # the first write: subscribe, under a timer
                async with asyncio.timeout_at(deadline):
                    prefix = await self._subscribe()
            token = str(next(self._tokens))
            future: asyncio.Future[PubAck] = loop.create_future()
            self._waiting[token] = (future, deadline)
            if self._sweep is None:
                self._sweep = loop.call_later(SWEEP_EVERY, self._expire)
            try:
                await self.nc.publish(
                    subject, data, reply=f"{prefix}.{token}", headers=dict(headers) or None
                )
                return await future
            finally:
                self._waiting.pop(token, None)
        finally:
            self._slots.release()

    def _expire(self) -> None:
        """Fail the writes whose deadline passed; look again while any is awaited."""
        now = asyncio.get_running_loop().time()
        for future, deadline in list(self._waiting.values()):
            if deadline <= now and not future.done():
                future.set_exception(TimeoutError())
        self._sweep = None
        if self._waiting:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._expire)

    async def _subscribe(self) -> str:
        async with self._subscribing:
            if self._prefix is None:
                prefix = self.nc.new_inbox()
                await self.nc.subscribe(f"{prefix}.*", cb=self._answer)
                self._prefix = prefix
            return self._prefix

    async def _answer(self, msg: Msg) -> None:
        waiting = self._waiting.get(msg.subject.rpartition(".")[2])
        if waiting is None or waiting[0].done():
            return  # given up on already: its slot is back
        future = waiting[0]
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(NoStreamResponseError())
            return
        try:
            reply = orjson.loads(msg.data)  # the server's own small JSON, read 3 times an event
            if "error" in reply:
                future.set_exception(APIError.from_error(reply["error"]))
            else:  # built directly: from_response looks the fields up on every call
                future.set_result(
                    PubAck(
                        stream=reply["stream"],
                        seq=reply["seq"],
                        domain=reply.get("domain"),
                        duplicate=reply.get("duplicate"),
                    )
                )
        except (ValueError, TypeError, KeyError) as exc:
            future.set_exception(NatsError(f"unreadable publish ack: {exc}"))
