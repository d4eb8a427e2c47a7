"""Dead letters for the messages JetStream gave up on.

The daemon dead-letters what it cannot handle on its last delivery. But a
message can end without reaching that line: the daemon holding it crashed,
hung, lost its connection, or could not even read it, on every delivery. The
server then stops redelivering at `max_deliver` and says so on
`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`, and nothing
else would keep a trace. Every replica listens in one queue group (one takes
each advisory), fetches the message by its stream sequence and stores it as a
dead letter (reason `max_deliveries`). Its Nats-Msg-Id is the one the daemon
would have used (`deadletter:<event id>`), so JetStream keeps one dead letter
when a replica stored it already, or two replicas both do.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from remediator.engine.events import event_id
from remediator.errors import TransportError
from remediator.model import Delivery
from remediator.nats.inbound import Letter

log = logging.getLogger(__name__)

ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
REASON = "max_deliveries"
_PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0)  # storing is tried again over ~15 s of NATS trouble


Store = Callable[[Letter, str, str, str], Awaitable[None]]  # letter, reason, error, event id


class GiveUps:
    """Listens for the max-deliveries advisories of one consumer and stores their letters."""

    def __init__(self, nc: Client, js: JetStreamContext, stream: str, durable: str) -> None:
        self.nc, self.js = nc, js
        self.stream, self.durable = stream, durable
        self._tasks: set[asyncio.Task[None]] = set()
        self.store: Store | None = None  # Transport.store_letter, set by the transport
        self.on_stored: Callable[[str], None] | None = None  # the dead-letter counter

    async def subscribe(self) -> Subscription:
        subject = f"{ADVISORY}.{self.stream}.{self.durable}"
        return await self.nc.subscribe(subject, queue=self.durable, cb=self._advised)

    async def _advised(self, msg: Msg) -> None:
        # Off the client's dispatch task: fetching and storing make requests of their own.
        task = asyncio.create_task(self._store(msg.data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(self, advisory: bytes) -> None:
        try:
            body = json.loads(advisory)
            sequence, deliveries = int(body["stream_seq"]), int(body.get("deliveries", 0))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("unreadable max-deliveries advisory: %s", exc)
            return
        delivery = Delivery(stream=self.stream, sequence=sequence, num_delivered=deliveries)
        letter, error = await self._letter(delivery)
        eid = event_id(letter.subject, letter.headers, letter.data, delivery)
        if self.store is None:
            return
        for pause in (*_PAUSES, None):
            try:
                await self.store(letter, REASON, error, eid)
                break
            except TransportError as exc:
                if pause is None:
                    log.error("cannot store the dead letter of %s: %s", eid, exc)
                    return
                log.warning("cannot store the dead letter of %s yet: %s", eid, exc)
                await asyncio.sleep(pause)
        log.warning("dead letter (%s) from %s: event %s", REASON, letter.subject, eid)
        if self.on_stored is not None:
            self.on_stored(REASON)

    async def _letter(self, delivery: Delivery) -> tuple[Letter, str]:
        why = f"delivered {delivery.num_delivered} times (max_deliver) and never acknowledged"
        try:
            stored = await self._fetch(delivery.sequence)
        except NotFoundError:  # removed since (limits, age): the letter says where it was
            return Letter("", {}, b"", delivery), f"{why}; no longer in the stream"
        except (NatsError, TimeoutError, OSError) as exc:
            error = exc or type(exc).__name__
            return Letter("", {}, b"", delivery), f"{why}; cannot read it from the stream: {error}"
        headers = {str(k): str(v) for k, v in (stored.headers or {}).items()}
        return Letter(stored.subject or "", headers, stored.data or b"", delivery), why

    async def _fetch(self, sequence: int) -> RawStreamMsg:
        for pause in _PAUSES:
            try:
                return await self.js.get_msg(self.stream, sequence)
            except NotFoundError:
                raise
            except (NatsError, TimeoutError, OSError):
                await asyncio.sleep(pause)
        return await self.js.get_msg(self.stream, sequence)
