"""Collect NATS messages on a subject and await them, never sleeping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError


@dataclass
class Collector:
    messages: list[Msg] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @classmethod
    async def on(cls, nc: Client, subject: str) -> Collector:
        collector = cls()
        await nc.subscribe(subject, cb=collector._add)
        await nc.flush()
        return collector

    async def _add(self, msg: Msg) -> None:
        async with self._arrived:
            self.messages.append(msg)
            self._arrived.notify_all()

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, object]]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)
        return self.bodies()

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(m.data) for m in self.messages]


async def stored(
    nc: Client, subject: str, stream: str = "REMEDIATOR_RESULTS"
) -> list[dict[str, object]]:
    """Every message the stream holds on `subject`, read with an ephemeral pull consumer.

    The count comes from the stream's leader: an ephemeral consumer may be placed on a
    follower, which reads its own copy and can lag a moment behind (after a restart, or
    for the message just stored), so its own `num_pending` could end the read early.
    """
    js = nc.jetstream()
    info = await js.stream_info(stream, subjects_filter=subject)
    wanted = sum((info.state.subjects or {}).values())
    sub = await js.pull_subscribe(subject, stream=stream)
    bodies: list[dict[str, object]] = []
    try:
        while len(bodies) < wanted:  # a lagging follower answers late, not short
            for msg in await sub.fetch(min(wanted - len(bodies), 500), timeout=5):
                bodies.append(json.loads(msg.data))
                await msg.ack()
        return bodies
    finally:
        await sub.unsubscribe()


async def stored_until(
    nc: Client,
    subject: str,
    done: Callable[[list[dict[str, object]]], bool],
    timeout: float = 60.0,
) -> list[dict[str, object]]:
    """Poll the stream (with a deadline) until `done` holds for what it stores.

    Errors while a restarted server recovers its streams count as "not yet".
    """
    async with asyncio.timeout(timeout):
        while True:
            try:
                bodies = await stored(nc, subject)
                if done(bodies):
                    return bodies
            except (NatsError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
