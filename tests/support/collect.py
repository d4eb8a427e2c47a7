"""Collect NATS messages on a subject and await them, never sleeping."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.aio.msg import Msg


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
