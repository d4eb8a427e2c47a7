"""History: the messages a stream has stored, read without disturbing anyone.

`replay` (the alerts stream) and `history` / `show` (the results stream) read
through an ephemeral consumer of their own:
messages are delivered in stream order, never acked (ack policy none), the
consumer lives in server memory, is deleted when the read ends, and expires
on the server should the reader die first. It never binds to the daemon's
durable consumer, so the daemon's pending counts and delivered sequence stay
as they were, and it publishes nothing.

How much to read is fixed when the read starts (the consumer's pending count),
so events arriving meanwhile do not keep a replay going forever.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from remediator.errors import TransportError

BATCH = 256
_INACTIVE = 60.0  # seconds after which the server drops the consumer of a dead reader
_FETCH_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """One stored message, and where and when the stream stored it."""

    stream: str
    sequence: int
    subject: str
    headers: Mapping[str, str]
    data: bytes
    time: float  # when stored, seconds since the epoch


@dataclass(frozen=True, slots=True, kw_only=True)
class Span:
    """Which messages: stored since a time, or from one sequence to another (inclusive),
    optionally only those on subjects matching `subject` (a NATS subject filter)."""

    since: float | None = None
    first: int | None = None
    last: int | None = None
    subject: str | None = None

    def config(self) -> ConsumerConfig:
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=_INACTIVE,
            mem_storage=True,
            description="remediator history reader (read-only)",
        )
        if self.subject is not None:
            config.filter_subject = self.subject
        if self.first is not None:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self.first
        elif self.since is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = dt.datetime.fromtimestamp(self.since, dt.UTC)
        return config


async def read(nc: Client, stream: str, span: Span) -> AsyncIterator[Stored]:
    """The stored messages in `span`, oldest first."""
    js = nc.jetstream()
    try:
        info = await js.add_consumer(stream, span.config())
    except NotFoundError as exc:
        raise TransportError(f"stream {stream} not found") from exc
    except (NatsError, OSError) as exc:
        raise TransportError(f"cannot read stream {stream}: {exc}") from exc
    subscription = await js.pull_subscribe_bind(consumer=info.name, stream=stream)
    remaining = int(info.num_pending or 0)
    try:
        while remaining > 0:
            try:
                messages = await subscription.fetch(min(BATCH, remaining), _FETCH_TIMEOUT)
            except NatsTimeoutError:
                return  # the rest went (age or size limits) since the read started
            except NatsError as exc:  # e.g. the connection closed under a daemon stopping
                raise TransportError(f"cannot read stream {stream}: {exc}") from exc
            remaining -= len(messages)
            for msg in messages:
                meta = msg.metadata
                if span.last is not None and meta.sequence.stream > span.last:
                    return
                yield Stored(
                    stream=stream,
                    sequence=meta.sequence.stream,
                    subject=msg.subject,
                    headers=dict(msg.headers or {}),
                    data=msg.data,
                    time=meta.timestamp.timestamp(),
                )
    finally:
        with contextlib.suppress(NatsError):  # an inactive consumer goes by itself
            await subscription.unsubscribe()
            await _forget(nc, stream, str(info.name))


async def _forget(nc: Client, stream: str, consumer: str) -> None:
    with contextlib.suppress(NatsError, OSError):  # else it expires on the server by itself
        await nc.jetstream().delete_consumer(stream, consumer)
